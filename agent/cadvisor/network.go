package cadvisor

import (
	"errors"
	"fmt"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// networkMetric is one per-interface counter.
type networkMetric struct {
	desc  *prometheus.Desc
	value func(*netlink.LinkStatistics) uint64
}

var networkMetrics = []networkMetric{
	{newDesc("container_network_receive_bytes_total", "Cumulative count of bytes received", nil, "interface"),
		func(s *netlink.LinkStatistics) uint64 { return s.RxBytes }},
	{newDesc("container_network_receive_packets_total", "Cumulative count of packets received", nil, "interface"),
		func(s *netlink.LinkStatistics) uint64 { return s.RxPackets }},
	{newDesc("container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving", nil, "interface"),
		func(s *netlink.LinkStatistics) uint64 { return s.RxDropped }},
	{newDesc("container_network_receive_errors_total", "Cumulative count of errors encountered while receiving", nil, "interface"),
		func(s *netlink.LinkStatistics) uint64 { return s.RxErrors }},
	{newDesc("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", nil, "interface"),
		func(s *netlink.LinkStatistics) uint64 { return s.TxBytes }},
	{newDesc("container_network_transmit_packets_total", "Cumulative count of packets transmitted", nil, "interface"),
		func(s *netlink.LinkStatistics) uint64 { return s.TxPackets }},
	{newDesc("container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting", nil, "interface"),
		func(s *netlink.LinkStatistics) uint64 { return s.TxDropped }},
	{newDesc("container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting", nil, "interface"),
		func(s *netlink.LinkStatistics) uint64 { return s.TxErrors }},
}

// collectNetwork sends the counters of every interface in the network
// namespace pinned at nsPath except lo, which cAdvisor leaves out too. The
// netlink socket is opened inside the namespace, so no thread of the agent
// ever enters it.
func collectNetwork(ch chan<- prometheus.Metric, nsPath string, labels []string) error {
	links, err := listLinks(nsPath)
	if err != nil {
		return err
	}
	for _, l := range links {
		attrs := l.Attrs()
		if attrs.Name == "lo" || attrs.Statistics == nil {
			continue
		}
		values := append(slices.Clip(labels), attrs.Name)
		for _, m := range networkMetrics {
			ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, float64(m.value(attrs.Statistics)), values...)
		}
	}
	return nil
}

func listLinks(nsPath string) ([]netlink.Link, error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", nsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("open netlink in netns %s: %w", nsPath, err)
	}
	defer h.Close()
	links, err := h.LinkList()
	for try := 1; errors.Is(err, netlink.ErrDumpInterrupted) && try < 3; try++ {
		links, err = h.LinkList() // a link changed during the dump
	}
	if err != nil {
		return nil, fmt.Errorf("list links in netns %s: %w", nsPath, err)
	}
	return links, nil
}
