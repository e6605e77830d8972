"""AWS: Lambda event routing, the SQS message source, boto3 clients, ``letsgo-worker invoke``."""
