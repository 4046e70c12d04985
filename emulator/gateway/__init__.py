"""emulator/gateway: the AI gateway of a site, an SSH CLI in a vendor's dialect (Huawei VRP by default,
netmiko `huawei`).

``grammar`` is the command-grammar engine (tokens, abbreviations, error positions), ``device`` the
gateway itself (configuration, real link counters, tc shaping of the WAN port, saving), ``session``
one terminal on it (views, line limits, dispatch to the dialect's handlers), ``dialects`` the CLI
dialects by name (``vrp``: :mod:`.dialects.vrp`; one module each), ``terminal`` the line editor
and ``server`` the paramiko SSH server around them.  ``python -m emulator.gateway --config FILE.json
[--dialect NAME]`` runs one gateway, normally inside the gateway's network namespace
(``ip netns exec dcl-<name> ...``); modules named in ``DCILAB_PLUGINS`` are imported first, so
that a dialect of your own can register itself.
"""
