"""The stages of fraudseq: generate, validate, train, score, evaluate, report; config; the CLI."""
