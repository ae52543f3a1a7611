"""The servers benchmarks/http.py measures skimserve against, each a file a user could have written."""
