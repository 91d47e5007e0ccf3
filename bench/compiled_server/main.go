// The compiled reference of bench/http_input.py: a Go net/http server doing the HTTP input's
// work for one event per POST (decode the JSON event, map its priority and labels, add one
// to a Prometheus counter vector, answer 200), so that the exporter is measured beside it.
// Built from Debian's Go and client_golang packages (GOPATH mode, no module download).
// Prints its input port and its metrics port, then serves until killed.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type event struct {
	Rule         string                 `json:"rule"`
	Priority     string                 `json:"priority"`
	Source       string                 `json:"source"`
	Hostname     string                 `json:"hostname"`
	Tags         []string               `json:"tags"`
	OutputFields map[string]interface{} `json:"output_fields"`
}

var priorities = map[string]int{
	"emergency": 0, "alert": 1, "critical": 2, "error": 3, "warning": 4,
	"notice": 5, "informational": 6, "info": 6, "debug": 7,
}

var events = prometheus.NewCounterVec(
	prometheus.CounterOpts{Name: "falco_events", Help: "Falco events."},
	[]string{"rule", "priority", "hostname", "source", "tags", "k8s_ns_name", "k8s_pod_name"},
)

func field(fields map[string]interface{}, name string) string {
	if value, ok := fields[name].(string); ok {
		return value
	}
	return ""
}

func input(w http.ResponseWriter, r *http.Request) {
	var e event
	if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
		http.Error(w, "not JSON", http.StatusBadRequest)
		return
	}
	priority, ok := priorities[strings.ToLower(e.Priority)]
	if !ok || e.Rule == "" {
		http.Error(w, "not an event", http.StatusBadRequest)
		return
	}
	tags := ""
	if len(e.Tags) > 0 {
		tags = "," + strings.Join(e.Tags, ",") + ","
	}
	events.WithLabelValues(e.Rule, strconv.Itoa(priority), e.Hostname, e.Source, tags,
		field(e.OutputFields, "k8s.ns.name"), field(e.OutputFields, "k8s.pod.name")).Inc()
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"accepted":1}`))
}

func listen() net.Listener {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return listener
}

func main() {
	registry := prometheus.NewRegistry()
	registry.MustRegister(events)
	inputListener, metricsListener := listen(), listen()
	fmt.Println(inputListener.Addr().(*net.TCPAddr).Port, metricsListener.Addr().(*net.TCPAddr).Port)
	go http.Serve(metricsListener, promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	http.Serve(inputListener, http.HandlerFunc(input))
}
