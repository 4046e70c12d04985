"""The emulated optical line: a user-space forwarder joining two sites' gateways over TAPs.

``model`` holds the physics (fibre delay, BER loss, shaping) and the config; ``netns`` opens
the TAPs inside the gateways' namespaces; ``forwarder`` is the data plane (one child process
per direction); ``control`` is the JSON-lines control socket and its client ``LineControl``;
``pair`` (``LinePair``) builds two throwaway namespaces joined by a line, for benches and tests.
Run with ``python -m emulator.line --config FILE.json``. Stdlib only; knows nothing of
testbed/ or drivers/.
"""
