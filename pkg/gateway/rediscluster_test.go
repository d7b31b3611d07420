package gateway_test

import (
	"testing"

	"github.com/parley-chat/parley/internal/redistest"
)

// The invariants and the people features again, on a Redis Cluster of
// three masters and three replicas: rooms and users spread over the
// masters (each room's keys and channel on its own slot, each user's on
// another), sharded pub/sub, one pub/sub connection per master per
// gateway. Each test below is the one of that name, unchanged, with its
// gateways on the Cluster instead of one Redis; the Cluster is shared, each
// test under its own key prefix.
func TestOnRedisCluster(t *testing.T) {
	rc := redistest.StartCluster(t, redistest.ClusterOptions{})
	onRedisCluster = rc
	defer func() { onRedisCluster = nil }()
	for _, tc := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"Invariant1_AckedMeansDurableAndDelivered", TestInvariant1_AckedMeansDurableAndDelivered},
		{"Invariant2_OneAtomicPublish", TestInvariant2_OneAtomicPublish},
		{"Invariant3_IdempotentResendThroughAnotherGateway", TestInvariant3_IdempotentResendThroughAnotherGateway},
		{"Invariant4_ResumeOnAnotherGatewayWhileMessagesFlow", TestInvariant4_ResumeOnAnotherGatewayWhileMessagesFlow},
		{"Invariant4_NewDeviceGetsBacklog", TestInvariant4_NewDeviceGetsBacklog},
		{"Invariant4_TrimmedHistoryReportsNotRecovered", TestInvariant4_TrimmedHistoryReportsNotRecovered},
		{"Invariant6_DrainCloses1012AndClientsResume", TestInvariant6_DrainCloses1012AndClientsResume},
		{"Invariant7_SlowConsumerClosed1013", TestInvariant7_SlowConsumerClosed1013},
		{"MembershipsAndReadCursorsAcrossDevices", TestMembershipsAndReadCursorsAcrossDevices},
		{"DirectRoom", TestDirectRoom},
		{"PrivateRoomsAndDirectory", TestPrivateRoomsAndDirectory},
		{"SyncJoinsAllTheUsersRooms", TestSyncJoinsAllTheUsersRooms},
		{"LeavePrivateRoomCutsOtherDevices", TestLeavePrivateRoomCutsOtherDevices},
		{"Presence", TestPresence},
		{"UserOnline", TestUserOnline},
		{"TypingRelayedToOtherMembersOnce", TestTypingRelayedToOtherMembersOnce},
		{"APIRoomsAndMembers", TestAPIRoomsAndMembers},
		{"APIRemoveMemberCutsLiveJoins", TestAPIRemoveMemberCutsLiveJoins},
		{"SSEResumeOnAnotherGateway", TestSSEResumeOnAnotherGateway},
		{"PollWaits", TestPollWaits},
	} {
		t.Run(tc.name, tc.run)
	}
}
