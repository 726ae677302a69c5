"""Print the namespace's ``nf_conntrack_*`` sysctls as one JSON object (name -> value).

Run by the golden recorder in the router namespace right after the dump:
``python3 -m tools.golden.scenarios.router_sysctls``.
"""

import glob
import json

out = {}
for p in sorted(glob.glob("/proc/sys/net/netfilter/nf_conntrack_*")):
    try:
        with open(p) as f:
            out[p.rsplit("/", 1)[1]] = f.read().strip()
    except OSError:
        pass
print(json.dumps(out))
