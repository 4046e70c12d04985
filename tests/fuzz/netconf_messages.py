"""Hypothesis strategies for NETCONF messages: real RPCs with random content (subtrees near a
small interfaces/system datastore, every operation attribute, odd text and entities), in hostile
wrappers (XML declarations with odd encodings, DOCTYPEs with entities, billion laughs, external
DTDs, deep nesting, huge text), cut short, or plain noise."""

from __future__ import annotations

from hypothesis import strategies as st

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
NOTIF = "urn:ietf:params:xml:ns:netconf:notification:1.0"
IF_NS, SYS_NS = "urn:example:interfaces", "urn:example:system"
INITIAL = f"""<data xmlns="{NC}">
  <interfaces xmlns="{IF_NS}">
    <interface><name>eth0</name><mtu>1500</mtu><description>uplink</description></interface>
    <interface><name>eth1</name><mtu>9000</mtu></interface>
  </interfaces>
  <system xmlns="{SYS_NS}"><hostname>otn-a</hostname><location>site-a</location></system>
</data>"""

NAMES = ["interfaces", "interface", "name", "mtu", "description", "system", "hostname", "location", "config",
         "filter", "running", "candidate", "data", "x", "nc:interface", "a-b.c_d"]
URIS = [IF_NS, SYS_NS, NC, "urn:other", "", "http://www.w3.org/XML/1998/namespace"]
OPS = ["merge", "replace", "create", "delete", "remove", "none", "bogus", ""]
ODD_TEXT = ["&amp;", "&lt;&gt;&quot;&apos;", "&#65;", "&#x10FFFF;", "&#0;", "&#xD800;", "&x;", "&", "<![CDATA[<a>&x;]]>",
            "<!-- c -->", "<?pi data?>", "]]>", "]]>]]>", "\x00", "\x01", "\ufffe", "\U0001F600", " ", "\n#5\n"]
text = st.one_of(st.text(max_size=20), st.sampled_from(ODD_TEXT))


@st.composite
def attrs(draw: st.DrawFn) -> str:
    out = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.integers(0, 4))
        if kind == 0:
            out.append(f' xmlns="{draw(st.sampled_from(URIS))}"')
        elif kind == 1:
            out.append(f' xmlns:nc="{NC}" nc:operation="{draw(st.sampled_from(OPS))}"')
        elif kind == 2:
            out.append(f' operation="{draw(st.sampled_from(OPS))}"')
        elif kind == 3:
            out.append(f' type="{draw(st.sampled_from(["subtree", "xpath", ""]))}"')
        else:
            out.append(f' {draw(st.sampled_from(["a", "b:c", "xml:lang"]))}="{draw(text)}"')
    return "".join(out)


@st.composite
def element(draw: st.DrawFn, depth: int = 0) -> str:
    name = draw(st.sampled_from(NAMES))
    a = draw(attrs())
    if depth >= 4 or draw(st.integers(0, 2)) == 0:
        body = draw(text)
    else:
        body = "".join(draw(element(depth + 1)) for _ in range(draw(st.integers(0, 3))))
    if draw(st.integers(0, 30)) == 0:
        return f"<{name}{a}/>"
    return f"<{name}{a}>{body}</{name}>"


def config_tree() -> st.SearchStrategy[str]:
    """Config subtrees near the initial data (so that edits hit existing nodes), and random ones."""
    iface = st.builds(
        lambda op, name, mtu, extra: (f'<interface{op}>' + (f"<name>{name}</name>" if name is not None else "")
                                      + (f"<mtu>{mtu}</mtu>" if mtu is not None else "") + extra + "</interface>"),
        st.sampled_from(["", *(f' nc:operation="{o}"' for o in OPS)]),
        st.one_of(st.none(), st.sampled_from(["eth0", "eth1", "eth2", "", "&amp;", "<x/>"])),
        st.one_of(st.none(), st.integers(-1, 70000)),
        st.one_of(st.just(""), element(2)))
    interfaces = st.builds(lambda op, items: f'<interfaces xmlns="{IF_NS}"{op}>' + "".join(items) + "</interfaces>",
                           st.sampled_from(["", ' nc:operation="replace"', ' nc:operation="delete"']),
                           st.lists(iface, max_size=3))
    system = st.builds(lambda op, host: f'<system xmlns="{SYS_NS}"{op}><hostname>{host}</hostname></system>',
                       st.sampled_from(["", *(f' nc:operation="{o}"' for o in OPS)]), text)
    return st.lists(st.one_of(interfaces, system, element()), max_size=3).map("".join)


def datastore_el() -> st.SearchStrategy[str]:
    return st.sampled_from(["<running/>", "<candidate/>", "<startup/>", "", "<running/><candidate/>", "<url>x</url>"])


@st.composite
def operation(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["get", "get-config", "edit-config", "edit-config", "edit-config", "lock", "unlock",
                                 "validate", "discard-changes", "commit", "cancel-commit", "close-session",
                                 "kill-session", "create-subscription", "random"]))
    if kind == "get":
        return "<get>" + draw(st.sampled_from(["", f'<filter type="subtree">{draw(element())}</filter>'])) + "</get>"
    if kind == "get-config":
        filt = draw(st.one_of(st.just(""), element().map(lambda e: f'<filter type="subtree">{e}</filter>')))
        return f"<get-config><source>{draw(datastore_el())}</source>{filt}</get-config>"
    if kind == "edit-config":
        opts = "".join(f"<{k}>{draw(st.sampled_from(v))}</{k}>" for k, v in (
            ("default-operation", ["merge", "replace", "none", "bogus"]),
            ("test-option", ["test-then-set", "set", "test-only", "x"]),
            ("error-option", ["stop-on-error", "rollback-on-error", "continue-on-error", "x"]),
        ) if draw(st.booleans()))
        return (f"<edit-config><target>{draw(datastore_el())}</target>{opts}"
                f'<config xmlns:nc="{NC}">{draw(config_tree())}</config></edit-config>')
    if kind in ("lock", "unlock"):
        return f"<{kind}><target>{draw(datastore_el())}</target></{kind}>"
    if kind == "validate":
        return f"<validate><source>{draw(st.sampled_from(['<running/>', '<config/>', '']))}</source></validate>"
    if kind == "kill-session":
        return f"<kill-session><session-id>{draw(st.sampled_from(['1', '2', '0', '-1', 'x', '']))}</session-id></kill-session>"
    if kind == "create-subscription":
        return f'<create-subscription xmlns="{NOTIF}"><stream>{draw(text)}</stream></create-subscription>'
    if kind == "random":
        return draw(element())
    return f"<{kind}/>"


@st.composite
def rpc_message(draw: st.DrawFn) -> bytes:
    """A real RPC, maybe in a hostile wrapper, maybe cut short, or noise."""
    mid = draw(st.one_of(st.integers(0, 10**6).map(str), text))
    body = "".join(draw(operation()) for _ in range(draw(st.sampled_from([1, 1, 1, 1, 0, 2]))))
    envelope = draw(st.sampled_from([
        '<rpc xmlns="{nc}" message-id="{mid}">{body}</rpc>',
        '<nc:rpc xmlns:nc="{nc}" message-id="{mid}">{body}</nc:rpc>',
        '<rpc xmlns="{nc}">{body}</rpc>',
        '<rpc message-id="{mid}">{body}</rpc>',
        '<hello xmlns="{nc}">{body}</hello>',
        '<rpc xmlns="{nc}" message-id="{mid}" message-id="2">{body}</rpc>',
    ]))
    wrap = draw(st.sampled_from(["plain"] * 6 + ["decl", "doctype", "laughs", "external", "deep", "huge", "noise"]))
    if wrap == "deep":                                  # the parser stops at 256 levels; below, the server recurses
        n = draw(st.integers(1, 300))
        inner = "<a>" * n + "</a>" * n
        body = draw(st.sampled_from([
            f'<get-config><source><running/></source><filter type="subtree">{inner}</filter></get-config>',
            f"<edit-config><target><candidate/></target><config>{inner}</config></edit-config>",
            f"<edit-config><target><running/></target><config>{inner}</config></edit-config>",
        ]))
    doc = envelope.format(nc=NC, mid=mid.replace('"', "&quot;"), body=body)
    if wrap == "decl":
        enc = draw(st.sampled_from(["UTF-8", "utf-16", "ISO-8859-1", "bogus", "", "EBCDIC-US"]))
        doc = f'<?xml version="{draw(st.sampled_from(["1.0", "1.1", "2.0"]))}" encoding="{enc}"?>' + doc
    elif wrap == "doctype":
        doc = f'<!DOCTYPE rpc [<!ENTITY x "{draw(text)}">]>' + doc.replace("</rpc>", "&x;</rpc>")
    elif wrap == "laughs":
        ents = '<!ENTITY l0 "lol">' + "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 9))
        doc = f"<!DOCTYPE rpc [{ents}]>" + doc.replace("</rpc>", "<get><filter>&l8;</filter></get></rpc>")
    elif wrap == "external":
        doc = '<!DOCTYPE rpc SYSTEM "file:///etc/passwd">' + doc
    elif wrap == "huge":
        doc = doc.replace("</rpc>", f"<x>{'y' * draw(st.integers(10_000, 2_000_000))}</x></rpc>")
    data = doc.encode("utf-8", "surrogatepass")
    if wrap == "noise":
        data = draw(st.binary(max_size=2000))
    if draw(st.integers(0, 9)) == 0:
        data = data[:draw(st.integers(0, len(data)))]
    return data
