<?php
// The example backend as a web app, for PHP's built-in server:
//
//   PARLEY_URL=http://localhost:8080 PARLEY_API_KEY=... PARLEY_WEBHOOK_SECRET=whsec_... \
//   PARLEY_STATE_DIR=/tmp/parley-php php -S 127.0.0.1:9000 examples/php/server.php
//
// Routes: POST /chat/{room} (JSON {"id","from","body"}) posts through the
// server API; POST /webhooks/parley is the webhook endpoint.

declare(strict_types=1);

require_once __DIR__ . '/ChatController.php';

$state = getenv('PARLEY_STATE_DIR') ?: sys_get_temp_dir();
$controller = new ChatController(
    new ParleyClient(getenv('PARLEY_URL') ?: 'http://localhost:8080', getenv('PARLEY_API_KEY') ?: ''),
    new WebhookVerifier(getenv('PARLEY_WEBHOOK_SECRET') ?: ''),
    $state . '/seen-webhooks.txt',
    $state . '/notices.jsonl',
);

$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
$method = $_SERVER['REQUEST_METHOD'];
$raw = file_get_contents('php://input');
$headers = array_change_key_case(getallheaders(), CASE_LOWER);

if ($method === 'POST' && $path === '/webhooks/parley') {
    [$status, $body] = $controller->webhook($headers, $raw);
} elseif ($method === 'POST' && preg_match('#^/chat/([^/]+)$#', $path, $m)) {
    [$status, $body] = $controller->publish(rawurldecode($m[1]), json_decode($raw, true) ?? []);
} else {
    [$status, $body] = [404, ['error' => 'not found']];
}
http_response_code($status);
header('Content-Type: application/json');
echo json_encode($body), "\n";
