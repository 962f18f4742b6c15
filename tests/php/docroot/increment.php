<?php
// One request of the cluster session tests (crates/scd/tests/sessions_php.rs): increments the
// session's counter like counter.php, but says exactly how far it got, so that a test that
// kills an scd while requests are in flight can tell an increment that surely landed from one
// whose fate is unknown:
//
//   "written N"       the session handler stored N (HTTP 200, or 500 when a warning followed,
//                     e.g. the lock release failed; the warnings follow)
//   "unknown N: ..."  writing N was attempted and failed: it may or may not have landed (500)
//   "not-written: ..." the request failed before writing anything, e.g. no lock (500)
//
// Works with any session handler (phpredis, php-memcached).

$problems = [];
set_error_handler(function (int $severity, string $message) use (&$problems): bool {
    $problems[] = $message;
    return true;
});

function answer(int $status, string $line, array $problems): void
{
    http_response_code($status);
    header('Content-Type: text/plain');
    echo $line;
    if ($problems) {
        echo ': ', implode('; ', $problems);
    }
    echo "\n";
    exit;
}

if (!session_start()) {
    answer(500, 'not-written', $problems);
}
$value = ($_SESSION['counter'] ?? 0) + 1;
// Between the read and the write: without a lock, concurrent requests would read the same value.
usleep(1000 * (int) ($_GET['sleep_ms'] ?? 20));
$_SESSION['counter'] = $value;
// session_write_close() returns true whenever a session was open, even when the handler failed
// to store it (PHP 8): that failure shows only as PHP's warning "Failed to write session data".
$warnings_before = count($problems);
$closed = session_write_close();
$write_failed = false;
foreach (array_slice($problems, $warnings_before) as $warning) {
    $write_failed = $write_failed || str_contains($warning, 'Failed to write session data');
}
if (!$closed || $write_failed) {
    answer(500, "unknown $value", $problems);
}
answer($problems ? 500 : 200, "written $value", $problems);
