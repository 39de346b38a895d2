"""Names of the servers whose history is kept: this one, and those a collector sends statistics for."""

from __future__ import annotations

import re

LOCAL_SERVER = "local"
SERVER_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,62}")
