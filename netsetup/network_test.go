package netsetup_test

import (
	"github.com/peapod/peapod/netsetup"
	"github.com/peapod/peapod/reconcile"
)

// Manager is the controller's Network.
var _ reconcile.Network = (*netsetup.Manager)(nil)
