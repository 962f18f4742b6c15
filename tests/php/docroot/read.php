<?php
// Answers the session's counter without changing the session (read_and_close releases the
// lock at once).
session_start(['read_and_close' => true]);
header('Content-Type: text/plain');
echo $_SESSION['counter'] ?? 0, "\n";
