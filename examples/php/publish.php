<?php
// Posts one message from the command line through the server API:
//
//   PARLEY_URL=http://localhost:8080 PARLEY_API_KEY=... php examples/php/publish.php general m1 alice "hello"
//
// Prints the ack as JSON; exits 1 with the API's error on a refusal.

declare(strict_types=1);

require_once __DIR__ . '/ParleyClient.php';

if ($argc !== 5) {
    fwrite(STDERR, "usage: php publish.php ROOM ID FROM BODY\n");
    exit(2);
}
$client = new ParleyClient(getenv('PARLEY_URL') ?: 'http://localhost:8080', getenv('PARLEY_API_KEY') ?: '');
try {
    echo json_encode($client->publish($argv[1], $argv[2], $argv[3], $argv[4])), "\n";
} catch (ParleyError $e) {
    fwrite(STDERR, $e->getMessage() . " (HTTP {$e->status})\n");
    exit(1);
}
