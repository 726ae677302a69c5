"""The traffic programs of the golden recorders, one module per role in a scenario.

``tools/golden/record.py`` (and ``record_stress.py``) run them inside the client, router
or server namespace as ``python3 -m tools.golden.scenarios.<name> JSON-ARGS`` from the
repository root; ``prelude`` holds their shared socket helpers and the parsed arguments
``A``. They are programs, not a library: importing one runs it.
"""
