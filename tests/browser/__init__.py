"""Browser tests of the dashboard (Playwright with Debian's chromium) and the helpers its HTTP tests share."""
