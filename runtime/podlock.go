package runtime

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// podLocks serialises the steps of concurrent calls for one pod that touch
// the pod's shared files (its /etc/hosts, its volumes), while calls for
// different pods, and the slow parts of calls for one pod, run in
// parallel. The zero value is ready to use.
type podLocks struct {
	mu    sync.Mutex
	locks map[types.UID]*podLock
}

type podLock struct {
	sync.Mutex
	users int
}

// lock locks the pod's mutex and returns its unlock. Entries live only
// while someone holds or waits for them.
func (p *podLocks) lock(uid types.UID) (unlock func()) {
	p.mu.Lock()
	if p.locks == nil {
		p.locks = map[types.UID]*podLock{}
	}
	l := p.locks[uid]
	if l == nil {
		l = &podLock{}
		p.locks[uid] = l
	}
	l.users++
	p.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		p.mu.Lock()
		if l.users--; l.users == 0 {
			delete(p.locks, uid)
		}
		p.mu.Unlock()
	}
}
