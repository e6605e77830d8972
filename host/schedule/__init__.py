"""Schedule expressions, read the way AWS EventBridge Scheduler reads them.

:mod:`host.schedule.expressions` is the entry point (``parse_schedule``); ``base`` holds the
``Schedule`` interface and its error, ``cron`` the six-field form, ``zones`` time zones and
daylight saving, ``advice`` the help for refused expressions. Imports run one way:
expressions, advice, cron, zones, base.
"""
