"""emulator/gateway: the AI gateway of a site, an SSH CLI in the Huawei VRP style (netmiko `huawei`).

``cli`` is the command interpreter (views, abbreviations, VRP error markers, real link counters,
tc shaping of the WAN port, PFC/ECN settings, save/restore); ``server`` is the paramiko SSH
server around it; ``python -m emulator.gateway --config FILE.json`` runs one gateway, normally
inside the gateway's network namespace (``ip netns exec dcl-<name> ...``).
"""
