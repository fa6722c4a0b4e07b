"""`yapbench capacity`: the most real-time streams a server holds under SLOs (docs/capacity.md)."""
