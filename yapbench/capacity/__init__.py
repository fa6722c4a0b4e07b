"""The capacity search behind `yapbench capacity` (commands/capacity.py): the most real-time streams a server holds
under SLOs (docs/capacity.md).

Importing this package is cheap (`yapbench report` reads CAPACITY_JSON without pulling in Locust, which would
gevent-patch the reading process).
"""

CAPACITY_JSON = "capacity.json"  # the search's levels and answer, in the run directory
SPEC_JSON = "capacity_spec.json"  # the search parameters `yapbench capacity` hands to the Locust shape
