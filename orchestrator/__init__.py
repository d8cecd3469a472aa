"""crdb-certs: CockroachDB certificates made with openssl, the way the docs make them.

Flow: spec (TOML -> validated model) -> plan (pure list of steps) -> runner (execute) or script (print);
audit reads any certs directory back.
"""

__version__ = "0.1.0"
