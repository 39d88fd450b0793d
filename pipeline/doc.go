// Package pipeline is Causeway's Kafka plumbing on franz-go: the topic
// layout, the group partitioner, client options, the embedded broker (kfake
// with a data directory) and the changelog reader used to restore state.
//
// Everything here is safe for concurrent use unless a type says otherwise.
package pipeline
