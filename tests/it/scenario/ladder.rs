//! Scenarios 5–7: the whole ladder to SOS, every channel down, talon SIGKILLed mid-incident.
