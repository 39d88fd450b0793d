package edge

import (
	"encoding/json"

	pb "github.com/causeway/causeway/schemas/causewaypb"
)

// encodeEvent renders a timeline event as one JSON frame. It runs once per
// event per edge; every local recipient gets the same bytes.
func encodeEvent(ev *pb.Event) []byte {
	w := frameWriter{b: make([]byte, 0, 96+len(ev.GetMsg().GetBody()))}
	switch k := ev.GetKind().(type) {
	case *pb.Event_Msg:
		w.b = append(w.b, `{"type":"msg"`...)
		w.key("group")
		w.str(ev.GetGroup())
		w.key("seq")
		w.uint(ev.GetSeq())
		w.key("from")
		w.str(k.Msg.GetFrom())
		w.key("client_msg_id")
		w.str(k.Msg.GetClientMsgId())
		w.key("ts")
		w.int(ev.GetTsMs())
		w.key("body")
		if len(k.Msg.GetBody()) == 0 {
			w.b = append(w.b, "null"...)
		} else {
			// Bodies were validated and compacted by the edge that
			// accepted them.
			w.b = append(w.b, k.Msg.GetBody()...)
		}
	case *pb.Event_Member:
		w.b = append(w.b, `{"type":"member"`...)
		w.key("group")
		w.str(ev.GetGroup())
		w.key("seq")
		w.uint(ev.GetSeq())
		w.key("user")
		w.str(k.Member.GetUser())
		w.key("event")
		switch k.Member.GetChange() {
		case pb.Member_JOINED:
			w.str("joined")
		case pb.Member_LEFT:
			w.str("left")
		default:
			return nil // a change this version does not know
		}
		w.key("ts")
		w.int(ev.GetTsMs())
	default:
		return nil
	}
	w.b = append(w.b, '}')
	return w.b
}

// encodeReply renders a reply to one session's request as one frame.
func encodeReply(r *pb.Reply) []byte {
	switch k := r.GetKind().(type) {
	case *pb.Reply_Ack:
		return marshalFrame(ackFrame{Type: "ack", ID: r.GetRequestId(), Group: k.Ack.GetGroup(), Seq: k.Ack.GetSeq()})
	case *pb.Reply_Error:
		return marshalFrame(errorFrame{Type: "error", ID: r.GetRequestId(), Code: k.Error.GetCode(), Message: k.Error.GetMessage(), Reason: k.Error.GetReason(), User: k.Error.GetUser()})
	case *pb.Reply_Event:
		return encodeEvent(k.Event)
	case *pb.Reply_Subscribed:
		s := k.Subscribed
		return marshalFrame(subscribedFrame{Type: "subscribed", ID: r.GetRequestId(), Group: s.GetGroup(), Seq: s.GetSeq(), ReadSeq: s.GetReadSeq(), Recovered: s.GetRecovered()})
	}
	return nil
}

// encodeEphemeral renders an ephemeral frame (signal, presence, typing)
// of group; nil for a kind this version does not know.
func encodeEphemeral(group string, e *pb.Ephemeral) []byte {
	switch k := e.GetKind().(type) {
	case *pb.Ephemeral_Signal:
		sig := k.Signal
		var payload json.RawMessage
		if p := sig.GetPayload(); len(p) > 0 && json.Valid(p) {
			payload = p
		}
		return marshalFrame(signalFrame{Type: "signal", From: sig.GetFrom(), FromSession: sig.GetFromSession(), Call: sig.GetCall(),
			CallSeq: sig.GetCallSeq(), Kind: sig.GetKind(), Payload: payload, Ts: sig.GetTsMs()})
	case *pb.Ephemeral_Presence:
		p := k.Presence
		if p.GetCounts() {
			return marshalFrame(presenceCountsFrame{Type: "presence", Group: p.GetGroup(), Online: p.GetOnline(), Members: p.GetMembers(), Ts: p.GetTsMs()})
		}
		return marshalFrame(presenceFrame{Type: "presence", Group: p.GetGroup(), User: p.GetUser(), Status: p.GetStatus(), Sessions: p.GetSessions(), Ts: p.GetTsMs()})
	case *pb.Ephemeral_Receipts:
		rs := k.Receipts
		reads := make([]readCount, len(rs.GetReads()))
		for i, r := range rs.GetReads() {
			reads[i] = readCount{Seq: r.GetSeq(), Count: r.GetCount()}
		}
		return marshalFrame(receiptsFrame{Type: "receipts", Group: group, Members: rs.GetMembers(), Reads: reads})
	case *pb.Ephemeral_Read:
		return marshalFrame(ackFrame{Type: "read", Group: group, Seq: k.Read.GetSeq()})
	case *pb.Ephemeral_Typing:
		users := k.Typing.GetUsers()
		if users == nil {
			users = []string{}
		}
		return marshalFrame(typingFrame{Type: "typing", Group: group, Users: users})
	}
	return nil
}
