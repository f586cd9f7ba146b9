"""The findings page: statements generated from the tables, a per-run table, the comparison
with a published study, and every figure, in one self-contained HTML file."""
