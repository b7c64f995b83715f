"""Run kmock's KubernetesEmulator on a loopback port for the k8s integration tests.

Usage: python kmock_server.py OBJECTS.json
OBJECTS.json is a list of {"resource": "v1/nodes", "namespace": null, "name": "n", "object": {...}}
and {"declare": "v1/pods"} entries (kmock answers 404 for a resource that is neither declared nor
holds an object).
Prints "PORT <n>" once listening, then serves until its stdin closes (so it never outlives the
test process that started it).
"""
import asyncio
import json
import sys

import kmock


async def main(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        entries = json.load(f)
    async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
        for e in entries:
            if "declare" in e:
                emulator.resources[e["declare"]] = {}
                continue
            emulator.objects[e["resource"], e.get("namespace"), e["name"]] = e["object"]
        print(f"PORT {server.port}", flush=True)
        loop = asyncio.get_running_loop()
        # Serve until the parent closes our stdin (or dies).
        await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
