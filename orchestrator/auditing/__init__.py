"""The rules of `crdb-certs audit`, one module per topic, each beside the finding codes it emits (its
CODES). audit.py runs them in order and assembles the codes that audit.schema.json documents."""
