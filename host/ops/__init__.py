"""Operations: looking into a queue (local or SQS) for the dashboard, the metrics and the CLI."""
