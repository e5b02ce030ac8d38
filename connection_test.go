package gormflight

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/gormflight/gormflight/internal/engine"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
)

// connBumpProbe is a go-redis hook on a writer's client: at each generation
// bump (a gen_bump pipeline) it reads the written row from another
// PostgreSQL session, so a test can tell whether the write had committed
// when its bump ran.
type connBumpProbe struct {
	passHook
	pg *gorm.DB
	id int64

	mu   sync.Mutex
	seen []int64 // the row's val as another session saw it, per bump
	errs []error
}

func (p *connBumpProbe) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if runsScript(cmds, engine.ScriptGenBump) {
			var val int64
			err := p.pg.Raw("SELECT val FROM gft_cons_item WHERE id = ?", p.id).Scan(&val).Error
			p.mu.Lock()
			p.seen = append(p.seen, val)
			if err != nil {
				p.errs = append(p.errs, err)
			}
			p.mu.Unlock()
		}
		return next(ctx, cmds)
	}
}

func (p *connBumpProbe) take() ([]int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen, err := p.seen, errors.Join(p.errs...)
	p.seen, p.errs = nil, nil
	return seen, err
}

// Writes made in db.Connection run on a *sql.Conn, whose transactions do
// not come from the plugin's tracking pool. GORM's own transaction around a
// Create, Update or Delete there must still be bumped after its COMMIT; an
// explicit transaction begun on the connection, which the plugin cannot
// follow to its commit, holds its announcement, so no instance serves or
// stores an entry of the table until the announcement expires.
func TestConnectionTransactions(t *testing.T) {
	prefix := testPrefix(t)
	wrdb := openRedis(t, "")
	pg := openDB(t)
	consSchema(t, pg)
	w := newInstance(t, testConfig(wrdb, prefix))
	r := newInstance(t, testConfig(openRedis(t, ""), prefix))
	id := consNewItem(t, pg, consNextID(t, pg), 1)
	probe := &connBumpProbe{pg: pg, id: id}
	wrdb.AddHook(probe)
	read := consFirst(id)

	t.Run("default transaction", func(t *testing.T) {
		consExpect(t, "W prime", w, read, "val=1")
		consExpect(t, "R prime", r, read, "val=1")
		err := w.db.Connection(func(c *gorm.DB) error {
			return c.Model(&consItem{ID: id}).Update("val", 2).Error
		})
		if err != nil {
			t.Fatal(err)
		}
		seen, err := probe.take()
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) == 0 {
			t.Fatal("the write in db.Connection bumped no generation")
		}
		for i, v := range seen {
			if v != 2 {
				t.Errorf("bump %d ran while another session still saw val=%d: before COMMIT", i+1, v)
			}
		}
		consExpect(t, "R after the write", r, read, "val=2")
		consExpect(t, "W after the write", w, read, "val=2")
	})

	t.Run("explicit transaction", func(t *testing.T) {
		consExpect(t, "R prime", r, read, "val=2")
		err := w.db.Connection(func(c *gorm.DB) error {
			tx := c.Begin()
			if tx.Error != nil {
				return tx.Error
			}
			if err := tx.Model(&consItem{ID: id}).Update("val", 3).Error; err != nil {
				tx.Rollback()
				return err
			}
			// Between the write's bump and this COMMIT, a fill on another
			// instance reads the old row; it must not store it.
			consExpect(t, "R inside the transaction", r, read, "val=2")
			return tx.Commit().Error
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := probe.take(); err != nil {
			t.Fatal(err)
		}
		n, err := wrdb.Exists(context.Background(), w.p.engine.HeldKey("gft_cons_item")).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("the held announcement is gone after the commit (writers key exists=%d)", n)
		}
		consExpect(t, "R after the commit", r, read, "val=3")
		consExpect(t, "W after the commit", w, read, "val=3")
		// End the held announcement, as its lifetime would, so other tests
		// of the table cache again.
		if err := wrdb.Del(context.Background(), w.p.engine.HeldKey("gft_cons_item")).Err(); err != nil {
			t.Fatal(err)
		}
	})
}
