<?php
// A small client for Parley's server API, in plain PHP with curl: what a
// Laravel (or any PHP) backend needs to post into the chat and read it.
// Every call sends the API key as "Authorization: Bearer <key>" and speaks
// JSON; a refusal throws a ParleyError carrying the API's error code
// (bad_request, unauthorized, forbidden, not_found, too_large,
// rate_limited, unavailable, internal) and the HTTP status.

declare(strict_types=1);

final class ParleyError extends RuntimeException
{
    public function __construct(
        public readonly string $apiCode,
        public readonly int $status,
        string $message,
        public readonly ?int $retryAfter = null,
    ) {
        parent::__construct($apiCode . ': ' . $message, $status);
    }
}

final class ParleyClient
{
    public function __construct(
        private string $baseUrl,   // e.g. http://localhost:8080
        private string $apiKey,    // the SECRET of a gateway's --api-key NAME:SECRET
        private int $timeoutSeconds = 10,
    ) {
        $this->baseUrl = rtrim($baseUrl, '/');
    }

    /**
     * Posts $body in $room as user $from. $id makes the call idempotent:
     * calling again with the same id (after a timeout, say) posts nothing
     * new and returns the first answer with "duplicate" => true.
     * Returns the ack: room, id, seq, epoch, ts.
     */
    public function publish(string $room, string $id, string $from, string $body): array
    {
        return $this->call('POST', '/v1/rooms/' . rawurlencode($room) . '/messages',
            ['id' => $id, 'from' => $from, 'body' => $body]);
    }

    /** Posts one message to several rooms; returns one result per room. */
    public function broadcast(array $rooms, string $id, string $from, string $body): array
    {
        return $this->call('POST', '/v1/messages',
            ['rooms' => $rooms, 'id' => $id, 'from' => $from, 'body' => $body]);
    }

    /** Returns up to $limit messages after $after ("<epoch>:<seq>", or "" for the latest). */
    public function messages(string $room, string $after = '', int $limit = 100): array
    {
        $q = ['limit' => $limit];
        if ($after !== '') {
            $q['after'] = $after;
        }
        return $this->call('GET', '/v1/rooms/' . rawurlencode($room) . '/messages?' . http_build_query($q));
    }

    /** Creates a private room with its first members. */
    public function createRoom(string $room, array $members, string $kind = 'private'): array
    {
        return $this->call('POST', '/v1/rooms', ['room' => $room, 'kind' => $kind, 'members' => $members]);
    }

    /** Ends every connection of $user (logout, ban). */
    public function disconnect(string $user, string $reason = 'signed out'): array
    {
        return $this->call('POST', '/v1/users/' . rawurlencode($user) . '/disconnect', ['reason' => $reason]);
    }

    private function call(string $method, string $path, ?array $json = null): array
    {
        $ch = curl_init($this->baseUrl . $path);
        $headers = ['Authorization: Bearer ' . $this->apiKey, 'Accept: application/json'];
        $opts = [
            CURLOPT_CUSTOMREQUEST => $method,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_HEADER => true,
            CURLOPT_TIMEOUT => $this->timeoutSeconds,
        ];
        if ($json !== null) {
            $opts[CURLOPT_POSTFIELDS] = json_encode($json, JSON_THROW_ON_ERROR | JSON_UNESCAPED_UNICODE);
            $headers[] = 'Content-Type: application/json';
        }
        $opts[CURLOPT_HTTPHEADER] = $headers;
        curl_setopt_array($ch, $opts);
        $raw = curl_exec($ch);
        if ($raw === false) {
            $err = curl_error($ch);
            throw new ParleyError('unavailable', 0, 'cannot reach Parley: ' . $err);
        }
        $status = curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
        $headerSize = curl_getinfo($ch, CURLINFO_HEADER_SIZE);
        $head = substr($raw, 0, $headerSize);
        $data = json_decode(substr($raw, $headerSize), true) ?? [];
        if ($status >= 200 && $status < 300) {
            return $data;
        }
        $retry = null;
        if (preg_match('/^Retry-After:\s*(\d+)/mi', $head, $m)) {
            $retry = (int) $m[1];
        }
        throw new ParleyError($data['code'] ?? 'internal', $status, $data['message'] ?? ('HTTP ' . $status), $retry);
    }
}
