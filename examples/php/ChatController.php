<?php
// A Laravel-style controller in plain PHP: the two things a backend does
// with Parley. In Laravel, publish() would take an Illuminate Request and
// webhook() would be the route Parley's --webhook-url points at; here they
// take plain arrays so the example runs with php-cli alone.

declare(strict_types=1);

require_once __DIR__ . '/ParleyClient.php';
require_once __DIR__ . '/WebhookVerifier.php';

final class ChatController
{
    public function __construct(
        private ParleyClient $parley,
        private WebhookVerifier $verifier,
        private string $seenFile,    // webhook ids handled, one per line: Parley may deliver one twice
        private string $noticesFile, // where this example "sends" its push notices
    ) {
    }

    /**
     * POST /chat/{room}: the backend posts a message on a user's behalf
     * (a system notice, an order update...). Returns [status, body].
     */
    public function publish(string $room, array $input): array
    {
        try {
            $ack = $this->parley->publish($room, (string) ($input['id'] ?? ''), (string) ($input['from'] ?? ''), (string) ($input['body'] ?? ''));
            return [200, $ack];
        } catch (ParleyError $e) {
            // Pass the API's status on: 429 and 503 are worth retrying with
            // the same id; the others are not.
            return [$e->status ?: 503, ['code' => $e->apiCode, 'message' => $e->getMessage()]];
        }
    }

    /**
     * POST /webhooks/parley: Parley's outbox delivers here. A wrong
     * signature is refused with 401 (Parley retries, then dead-letters it);
     * an event seen before is acknowledged and skipped.
     */
    public function webhook(array $headers, string $rawBody): array
    {
        try {
            $event = $this->verifier->verify($headers, $rawBody);
        } catch (Throwable $e) {
            return [401, ['error' => $e->getMessage()]];
        }
        $id = $headers['webhook-id'];
        $fh = fopen($this->seenFile, 'c+');
        flock($fh, LOCK_EX);
        $seen = array_flip(array_filter(explode("\n", stream_get_contents($fh))));
        if (isset($seen[$id])) {
            flock($fh, LOCK_UN);
            fclose($fh);
            return [200, ['duplicate' => true]];
        }
        if (($event['type'] ?? '') === 'message.offline') {
            $d = $event['data'];
            // A real backend calls its push service (APNs, FCM, WeChat
            // subscribe messages) here.
            file_put_contents($this->noticesFile, json_encode([
                'to' => $d['user'],
                'title' => $d['from'] . ' in ' . $d['room'],
                'text' => self::preview($d['body']),
                'webhook_id' => $id,
            ]) . "\n", FILE_APPEND | LOCK_EX);
        }
        fseek($fh, 0, SEEK_END);
        fwrite($fh, $id . "\n");
        flock($fh, LOCK_UN);
        fclose($fh);
        return [200, ['ok' => true]];
    }

    /** The first 80 characters of a message (UTF-8, without mbstring). */
    private static function preview(string $body): string
    {
        return preg_match('/^.{0,80}/us', $body, $m) ? $m[0] : '';
    }
}
