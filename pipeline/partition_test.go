package pipeline

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The partitioner must agree with Kafka's default murmur2 partitioner, as
// implemented by franz-go's StickyKeyPartitioner(nil).
func TestPartitionForMatchesKafkaDefault(t *testing.T) {
	t.Parallel()
	p := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	for _, n := range []int{1, 3, 8, 16, 100} {
		for i := 0; i < 2000; i++ {
			key := fmt.Sprintf("room-%d-%s", i, "x"[:i%2])
			want := p.Partition(&kgo.Record{Key: []byte(key)}, n)
			if got := PartitionFor(key, int32(n)); int(got) != want {
				t.Fatalf("PartitionFor(%q, %d) = %d, Kafka default partitioner says %d", key, n, got, want)
			}
		}
	}
}

// Known values from Kafka's own Utils.murmur2 tests.
func TestMurmur2KnownValues(t *testing.T) {
	t.Parallel()
	cases := map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	}
	for in, want := range cases {
		if got := int32(murmur2(in)); got != want {
			t.Errorf("murmur2(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestPartitionForStableAndInRange(t *testing.T) {
	t.Parallel()
	if PartitionFor("g", 0) != 0 {
		t.Fatal("zero partitions must map to 0")
	}
	a, b := PartitionFor("room-1", 12), PartitionFor("room-1", 12)
	if a != b || a < 0 || a >= 12 {
		t.Fatalf("unstable or out of range: %d %d", a, b)
	}
}
