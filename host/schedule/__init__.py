"""Schedule expressions, read the way AWS EventBridge Scheduler reads them."""
