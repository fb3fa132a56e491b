"""SAE-Bench first-letter feature absorption (`absorption`), run on our model object and SAE."""
