// Package browsertest tests the dashboard's page in a real browser:
// headless Chromium, driven by chromedp. It is a module of its own so that
// the core module does not depend on chromedp.
//
// The test needs Chromium: $RESILIENCE_CHROMIUM, /usr/bin/chromium, or
// chromium on the PATH. Without it the test is skipped, unless
// RESILIENCE_REQUIRE_SERVICES=1, which turns the skip into a failure. It
// saves its screenshots in $RESILIENCE_ARTIFACTS when that is set, and in
// the test's temporary directory otherwise; RESILIENCE_SCREENSHOT names a
// file to copy the screenshot of the page with actions to (how
// docs/dashboard.png is made).
package browsertest
