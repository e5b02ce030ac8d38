package testredis

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// What a cluster's nodes say of it (CLUSTER INFO, CLUSTER NODES, INFO
// replication), and the waits for them to agree.

// node returns the node whose ID is id.
func (c *Cluster) node(id string) *Node {
	c.t.Helper()
	n := c.nodeByID(id)
	if n == nil {
		c.t.Fatalf("no node has ID %s", id)
	}
	return n
}

// anyUp returns a running node.
func (c *Cluster) anyUp() *Node {
	c.t.Helper()
	for _, n := range c.Nodes {
		if n.Up() {
			return n
		}
	}
	c.t.Fatal("no node of the cluster is running")
	return nil
}

// waitUntil waits until the cluster is healthy (see WaitHealthy) and its
// agreed view satisfies cond.
func (c *Cluster) waitUntil(what string, cond func(view) bool) {
	c.t.Helper()
	var last error
	ok := eventually(func() bool {
		v, err := c.view()
		if err == nil {
			err = c.linksUp(v)
		}
		if err == nil && !cond(v) {
			err = fmt.Errorf("agreed view: %v", v)
		}
		last = err
		return err == nil
	})
	if !ok {
		c.t.Fatalf("timed out after %v waiting for %s: %v%s", WaitTimeout, what, last, c.outputs())
	}
}

// settledView waits until the running nodes agree and returns their view.
func (c *Cluster) settledView(what string) view {
	c.t.Helper()
	var v view
	var last error
	if !eventually(func() bool { v, last = c.view(); return last == nil }) {
		c.t.Fatalf("timed out after %v waiting for %s: %v%s", WaitTimeout, what, last, c.outputs())
	}
	return v
}

// linksUp reports an error unless every running replica of v has its
// link to its master up.
func (c *Cluster) linksUp(v view) error {
	for id, cn := range v {
		if cn.master {
			continue
		}
		n := c.node(id)
		role, up, err := n.role()
		if err != nil {
			return err
		}
		if role != "slave" || !up {
			return fmt.Errorf("replica %s: role %s, link up %v", n.Addr, role, up)
		}
	}
	return nil
}

// outputs is every node's output, for failure messages.
func (c *Cluster) outputs() string {
	var b strings.Builder
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "\n--- %s (%s), up %v:\n%s", n.Addr, n.ID, n.Up(), n.Output())
	}
	return b.String()
}

// view is the cluster as its running nodes agree it is, by node ID; it
// holds the running nodes only.
type view map[string]clusterNode

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id       string
	master   bool
	masterID string   // a replica's master
	failing  bool     // flagged fail or fail?
	slots    [][2]int // a master's slot ranges
}

func (cn clusterNode) owns(slot int) bool {
	for _, r := range cn.slots {
		if slot >= r[0] && slot <= r[1] {
			return true
		}
	}
	return false
}

func (cn clusterNode) String() string {
	if !cn.master {
		return fmt.Sprintf("replica of %.8s", cn.masterID)
	}
	return fmt.Sprintf("master of %v", cn.slots)
}

// view returns the view every running node has of the running nodes, or
// an error while one reports a cluster state other than ok, flags a
// running node as failing, or sees the others differently.
func (c *Cluster) view() (view, error) {
	var agreed view
	var agreedBy *Node
	for _, n := range c.Nodes {
		if !n.Up() {
			continue
		}
		v, err := c.viewOf(n)
		if err != nil {
			return nil, err
		}
		if agreed == nil {
			agreed, agreedBy = v, n
			continue
		}
		if fmt.Sprint(v) != fmt.Sprint(agreed) { // fmt sorts map keys
			return nil, fmt.Errorf("%s sees %v, %s sees %v", n.Addr, v, agreedBy.Addr, agreed)
		}
	}
	return agreed, nil
}

// viewOf returns n's view of the running nodes.
func (c *Cluster) viewOf(n *Node) (view, error) {
	info, err := n.Do("CLUSTER", "INFO").Text()
	if err != nil {
		return nil, fmt.Errorf("CLUSTER INFO on %s: %w", n.Addr, err)
	}
	if !strings.Contains(info, "cluster_state:ok") {
		return nil, fmt.Errorf("%s: cluster state is not ok", n.Addr)
	}
	text, err := n.Do("CLUSTER", "NODES").Text()
	if err != nil {
		return nil, fmt.Errorf("CLUSTER NODES on %s: %w", n.Addr, err)
	}
	v := make(view)
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		cn, err := parseClusterNode(line)
		if err != nil {
			return nil, fmt.Errorf("CLUSTER NODES on %s: %w", n.Addr, err)
		}
		if other := c.nodeByID(cn.id); other == nil || !other.Up() {
			continue // a node of ours that is down, or one we never had
		}
		if cn.failing {
			return nil, fmt.Errorf("%s flags running node %s as failing: %s", n.Addr, cn.id, line)
		}
		v[cn.id] = cn
	}
	for _, other := range c.Nodes {
		if _, ok := v[other.ID]; other.Up() && !ok {
			return nil, fmt.Errorf("%s does not know %s yet", n.Addr, other.Addr)
		}
	}
	return v, nil
}

// nodeByID returns the node whose ID is id, or nil.
func (c *Cluster) nodeByID(id string) *Node {
	for _, n := range c.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// parseClusterNode parses a line of CLUSTER NODES:
// <id> <addr> <flags> <master> <ping> <pong> <epoch> <link> <slot>...
func parseClusterNode(line string) (clusterNode, error) {
	f := strings.Fields(line)
	if len(f) < 8 {
		return clusterNode{}, fmt.Errorf("malformed line %q", line)
	}
	flags := strings.Split(f[2], ",")
	cn := clusterNode{
		id:       f[0],
		master:   slices.Contains(flags, "master"),
		failing:  slices.Contains(flags, "fail") || slices.Contains(flags, "fail?"),
		masterID: strings.TrimPrefix(f[3], "-"),
	}
	for _, s := range f[8:] {
		if strings.HasPrefix(s, "[") {
			continue // a slot being imported or migrated
		}
		lo, hi, isRange := strings.Cut(s, "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil {
			return clusterNode{}, fmt.Errorf("malformed slots %q in %q", s, line)
		}
		cn.slots = append(cn.slots, [2]int{a, b})
	}
	return cn, nil
}
