//go:build !linux

package bench

import "errors"

type memberSet struct{}

func newMemberSet(*fanoutRun, int) (*memberSet, error) {
	return nil, errors.New("the fan-out bench reads its members with epoll: it runs on Linux only")
}

func (*memberSet) join(string) error         { return nil }
func (*memberSet) received() int64           { return 0 }
func (*memberSet) close() (int64, histogram) { return 0, histogram{} }
