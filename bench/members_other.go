//go:build !linux

package bench

import "errors"

type memberSet struct{}

func newMemberSet(*fanoutRun, int, int) (*memberSet, error) {
	return nil, errors.New("the fan-out bench reads its members with epoll: it runs on Linux only")
}

func (*memberSet) join(string, int) error { return nil }
func (*memberSet) received() int64        { return 0 }
func (*memberSet) receivedOn(int) int64   { return 0 }
func (*memberSet) close() []nodeTally     { return nil }
