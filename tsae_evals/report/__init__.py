"""The report layer: leaderboard tables, comparisons and regression checks over result records.

Reads `EvalRecord` files only (ours of any schema version, and SAE-Bench's own); never imports torch or loads a
model, so it runs anywhere the JSON is. Every column, direction and format comes from the metrics' own
declarations (`tsae_evals.results.MetricInfo`): nothing here knows a particular eval.
"""
