"""The report: run folders → records → verdicts → tables and figures → md/html/tex/json/text (torch-free)."""
