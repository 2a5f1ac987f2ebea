"""The rule catalogue: one rule per file, discovered by walking this package."""
