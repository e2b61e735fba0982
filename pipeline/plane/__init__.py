"""The batch data plane: each feed finished in one step and staged as Parquet (feeds.py, staging.py), duplicate
decisions on compact key columns (decide.py), and one file per window written from the staged rows (finalize.py)."""
