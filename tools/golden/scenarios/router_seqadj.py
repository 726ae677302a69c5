"""Print the router's NAT sequence adjustments (CTA_SEQ_ADJ_*, which ``conntrack -L``
does not show) as JSON: one [orig tuple as text, "pos before after" x2] per entry that has
one, read with sniffover's ctnetlink dump.

Run by the golden recorder in the router namespace right after the dump:
``python3 -m tools.golden.scenarios.router_seqadj``.
"""

import json

from sniffover.conntrack.snapshot import tuple_key
from sniffover.kernel.dump import dump_table

rows = [[tuple_key(e.orig), e.extra["seqadj"]] for e in dump_table() if "seqadj" in e.extra]
print(json.dumps(sorted(rows), indent=1))
