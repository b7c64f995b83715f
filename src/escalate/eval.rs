//! `talon agent eval`: see below.
