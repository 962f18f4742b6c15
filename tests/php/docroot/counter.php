<?php
// One request of the session interop test (crates/scd/tests/php_sessions.rs): reads the
// session's counter, waits a little so that concurrent requests overlap, and writes it back one
// higher. Any warning or notice (a lock not acquired, a write refused) makes it answer 500, so
// the test sees every failure instead of a silently lost update.

$problems = [];
set_error_handler(function (int $severity, string $message) use (&$problems): bool {
    $problems[] = $message;
    return true;
});

function fail(string $what, array $problems): void
{
    http_response_code(500);
    header('Content-Type: text/plain');
    echo $what, ': ', implode('; ', $problems), "\n";
    exit;
}

if (!session_start()) {
    fail('session_start failed', $problems);
}
$before = $_SESSION['counter'] ?? 0;
// Between the read and the write: without a lock, concurrent requests all read the same value.
usleep(1000 * (int) ($_GET['sleep_ms'] ?? 20));
$_SESSION['counter'] = $before + 1;
if (!session_write_close()) {
    fail('session_write_close failed', $problems);
}
if ($problems) {
    fail('warnings', $problems);
}
header('Content-Type: text/plain');
echo $before + 1, "\n";
