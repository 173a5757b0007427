package ingest

import (
	"time"

	"github.com/pion/rtp"
)

// ReorderBuffer puts one RTP stream back in sequence order and holds a gap
// open long enough for a NACK retransmission to fill it. It is a time-bound
// buffer, not a packet-count one: a retransmission arrives about one round
// trip plus a NACK interval late whatever the bitrate, so a count-based
// window would be too short for a fast stream and too long for a slow one.
//
// It is not safe for concurrent use; the caller serialises per stream.
type ReorderBuffer struct {
	maxWait    time.Duration // how long a hole is held open for a retransmission
	maxPackets int           // bound on memory whatever the clock says

	next    uint16 // the sequence number expected next
	started bool
	slots   map[uint16]heldPacket
	// oldest is when the earliest packet still held arrived: it is what
	// the hole in front of it has been waiting for.
	oldest time.Time
}

type heldPacket struct {
	pkt     *rtp.Packet
	arrived time.Time
}

// ReorderResult is what one Push, Expire or Flush releases, in sequence
// order.
type ReorderResult struct {
	Packets []*rtp.Packet
	// Lost counts sequence numbers given up on: the packets after each
	// hole follow it in Packets, and LostBefore[i] is the number lost
	// just before Packets[i].
	Lost       int
	LostBefore []int
	// Late counts duplicates and retransmissions that came after their
	// place had been given up or already filled: dropped.
	Late int
}

// NewReorderBuffer holds a hole open for maxWait, and at most maxPackets
// packets behind it.
func NewReorderBuffer(maxWait time.Duration, maxPackets int) *ReorderBuffer {
	return &ReorderBuffer{maxWait: maxWait, maxPackets: maxPackets, slots: map[uint16]heldPacket{}}
}

// Push adds a packet (the caller hands over ownership) and returns what
// can be delivered now.
func (b *ReorderBuffer) Push(pkt *rtp.Packet, now time.Time) ReorderResult {
	var res ReorderResult
	if !b.started {
		b.started, b.next = true, pkt.SequenceNumber
	}
	// Sequence numbers wrap: compare by signed distance from the head.
	ahead := int16(pkt.SequenceNumber - b.next)
	switch {
	case ahead < 0:
		res.Late++
		return res
	case ahead == 0:
		res.add(pkt, 0)
		b.next++
		if b.drainContiguous(&res) {
			b.resetOldest()
		}
	default:
		if _, dup := b.slots[pkt.SequenceNumber]; dup {
			res.Late++
			return res
		}
		if len(b.slots) == 0 {
			b.oldest = now
		}
		b.slots[pkt.SequenceNumber] = heldPacket{pkt: pkt, arrived: now}
	}
	b.Expire(&res, now)
	return res
}

// Expire gives up on the hole at the head when it has waited too long by
// now or the buffer is full, then releases what follows it into res: a
// stream gone quiet still delivers what it sent before the hole.
func (b *ReorderBuffer) Expire(res *ReorderResult, now time.Time) {
	for len(b.slots) > 0 && (now.Sub(b.oldest) >= b.maxWait || len(b.slots) > b.maxPackets) {
		skipped := 0
		for {
			if _, ok := b.slots[b.next]; ok {
				break
			}
			b.next++
			skipped++
		}
		res.Lost += skipped
		h := b.slots[b.next]
		delete(b.slots, b.next)
		b.next++
		res.add(h.pkt, skipped)
		b.drainContiguous(res)
		b.resetOldest()
	}
}

// Flush releases everything held, giving up on every hole (end of stream).
func (b *ReorderBuffer) Flush() ReorderResult {
	var res ReorderResult
	b.Expire(&res, b.oldest.Add(b.maxWait))
	return res
}

// drainContiguous releases the packets that follow the head without a
// hole, and reports whether it released any.
func (b *ReorderBuffer) drainContiguous(res *ReorderResult) bool {
	released := false
	for {
		h, ok := b.slots[b.next]
		if !ok {
			return released
		}
		delete(b.slots, b.next)
		b.next++
		res.add(h.pkt, 0)
		released = true
	}
}

func (b *ReorderBuffer) resetOldest() {
	b.oldest = time.Time{}
	for _, h := range b.slots {
		if b.oldest.IsZero() || h.arrived.Before(b.oldest) {
			b.oldest = h.arrived
		}
	}
}

func (r *ReorderResult) add(p *rtp.Packet, lostBefore int) {
	r.Packets = append(r.Packets, p)
	r.LostBefore = append(r.LostBefore, lostBefore)
}
