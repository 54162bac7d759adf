package agent

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// imageGCInterval is how often disk usage under --root is checked for
// image garbage collection, as kubelet's image GC period.
const imageGCInterval = 5 * time.Minute

// imageCollector removes images no container uses.
type imageCollector interface {
	// GC removes images for which inUse is false, oldest use first, while
	// the disk under the image store is above highPct used, until it is
	// below lowPct; it returns the bytes freed.
	GC(ctx context.Context, inUse func(id string) bool, highPct, lowPct int) (int64, error)
}

// imageUsers reports the images the host's containers use.
type imageUsers interface {
	// ImagesInUse returns the IDs of the images of every container the
	// runtime keeps, running or not.
	ImagesInUse() (map[string]bool, error)
}

// imageGC is the agent's image garbage collection: an image is in use
// while any container attempt the runtime keeps was started from it.
type imageGC struct {
	images    imageCollector
	users     imageUsers
	high, low int
}

// collect runs one round.
func (g *imageGC) collect(ctx context.Context, log *slog.Logger) error {
	inUse, err := g.users.ImagesInUse()
	if err != nil {
		return fmt.Errorf("list images in use: %w", err)
	}
	freed, err := g.images.GC(ctx, func(id string) bool { return inUse[id] }, g.high, g.low)
	if freed > 0 {
		log.Info("removed unused images", "bytes", freed)
	}
	if err != nil {
		return fmt.Errorf("image garbage collection: %w", err)
	}
	return nil
}

// collectPeriodically runs collect every interval until ctx is done.
// Failures are logged: the next round retries.
func (g *imageGC) collectPeriodically(ctx context.Context, log *slog.Logger, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := g.collect(ctx, log); err != nil && ctx.Err() == nil {
				log.Warn("image garbage collection", "err", err)
			}
		}
	}
}
