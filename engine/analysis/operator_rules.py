"""The fields ig's operators add to a gadget's data sources before it runs, as rule tables.

``ig image inspect`` instantiates every data operator ig registers (cmd/ig/main.go) in priority
order (pkg/gadget-context/run.go ``instantiateOperators``: by priority, then name); the fields an
operator adds in ``InstantiateDataOperator`` are what ``--show-datasources`` lists, those added
later (``PreStart``) are not. Each table below follows one operator and names the ig file and
function it follows (inspektor-gadget at aeac857bd979). Operators whose output depends on the host
or on ig's own configuration are left out (``DATA_OPERATORS`` lists each with the reason).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from gadgetstore.engine.analysis import dsmodel as ds
from gadgetstore.engine.analysis.dsmodel import DataSource, Field, GadgetContext, set_field_visibility, target_name
from gadgetstore.engine.errors import AnalysisError
from gadgetstore.engine.gonumbers import parse_bool

# -- ebpf operator's own formatters (pkg/operators/ebpf/formatters.go) --------------------------

ENUM_TARGET = "ebpf.formatter.enum"
KSTACK_TARGET = "ebpf.formatter.kstack"
KERNEL_STACK_MAP = "ig_kstack"  # pkg/operators/ebpf/types/types.go KernelStackMapName


def ebpf_enum_formatter(source: DataSource, enum_members: list[str]) -> None:
    """``getFormattersForEnums``: each enum member found in the source is hidden and gets a string field.

    The string field is named by ``ebpf.formatter.enum`` or the member's name minus ``_raw`` (a
    member with neither stays hidden, without a string field), beside the member (same parent).
    """
    added: set[str] = set()
    for member in enum_members:
        entry = source.get_field(member)
        if entry is None:
            continue
        source.set_hidden(entry, True)
        name = target_name(entry, ENUM_TARGET)
        if name is None or name in added:
            continue
        added.add(name)
        source.add_field(name, ds.KIND_STRING, same_parent_as=entry)


def ebpf_kstack_formatter(source: DataSource, map_names: frozenset[str]) -> None:
    """``initStackConverter``: a ``gadget_kernel_stack`` field is hidden and gets a string field."""
    for entry in source.fields_with_tag("type:gadget_kernel_stack"):
        source.set_hidden(entry, True)
        if KERNEL_STACK_MAP not in map_names:
            raise AnalysisError("kernel stack map is not initialized but used. if you are using "
                                "`gadget_kernel_stack` as event field, try to include <gadget/kernel_stack_map.h>")
        name = target_name(entry, KSTACK_TARGET)
        if name is not None:
            source.add_field(name, ds.KIND_STRING, same_parent_as=entry)


# -- formatters operator (pkg/operators/formatters/formatters.go, types.go) ---------------------

SIGNAL_NAMES = (
    "SIGABRT", "SIGALRM", "SIGBUS", "SIGCHLD", "SIGCLD", "SIGCONT", "SIGFPE", "SIGHUP", "SIGILL", "SIGINT",
    "SIGIO", "SIGIOT", "SIGKILL", "SIGPIPE", "SIGPOLL", "SIGPROF", "SIGPWR", "SIGQUIT", "SIGSEGV", "SIGSTKFLT",
    "SIGSTOP", "SIGSYS", "SIGTERM", "SIGTRAP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGUNUSED", "SIGURG",
    "SIGUSR1", "SIGUSR2", "SIGVTALRM", "SIGWINCH", "SIGXCPU", "SIGXFSZ",
)
ERRNO_NAMES = (
    "E2BIG", "EACCES", "EADDRINUSE", "EADDRNOTAVAIL", "EADV", "EAFNOSUPPORT", "EAGAIN", "EALREADY", "EBADE",
    "EBADF", "EBADFD", "EBADMSG", "EBADR", "EBADRQC", "EBADSLT", "EBFONT", "EBUSY", "ECANCELED", "ECHILD",
    "ECHRNG", "ECOMM", "ECONNABORTED", "ECONNREFUSED", "ECONNRESET", "EDEADLK", "EDEADLOCK", "EDESTADDRREQ",
    "EDOM", "EDOTDOT", "EDQUOT", "EEXIST", "EFAULT", "EFBIG", "EHOSTDOWN", "EHOSTUNREACH", "EIDRM", "EILSEQ",
    "EINPROGRESS", "EINTR", "EINVAL", "EIO", "EISCONN", "EISDIR", "EISNAM", "EKEYEXPIRED", "EKEYREJECTED",
    "EKEYREVOKED", "EL2HLT", "EL2NSYNC", "EL3HLT", "EL3RST", "ELIBACC", "ELIBBAD", "ELIBEXEC", "ELIBMAX",
    "ELIBSCN", "ELNRNG", "ELOOP", "EMEDIUMTYPE", "EMFILE", "EMLINK", "EMSGSIZE", "EMULTIHOP", "ENAMETOOLONG",
    "ENAVAIL", "ENETDOWN", "ENETRESET", "ENETUNREACH", "ENFILE", "ENOANO", "ENOBUFS", "ENOCSI", "ENODATA",
    "ENODEV", "ENOENT", "ENOEXEC", "ENOKEY", "ENOLCK", "ENOLINK", "ENOMEDIUM", "ENOMEM", "ENOMSG", "ENONET",
    "ENOPKG", "ENOPROTOOPT", "ENOSPC", "ENOSR", "ENOSTR", "ENOSYS", "ENOTBLK", "ENOTCONN", "ENOTDIR",
    "ENOTEMPTY", "ENOTNAM", "ENOTRECOVERABLE", "ENOTSOCK", "ENOTSUP", "ENOTTY", "ENOTUNIQ", "ENXIO",
    "EOPNOTSUPP", "EOVERFLOW", "EOWNERDEAD", "EPERM", "EPFNOSUPPORT", "EPIPE", "EPROTO", "EPROTONOSUPPORT",
    "EPROTOTYPE", "ERANGE", "EREMCHG", "EREMOTE", "EREMOTEIO", "ERESTART", "ERFKILL", "EROFS", "ESHUTDOWN",
    "ESOCKTNOSUPPORT", "ESPIPE", "ESRCH", "ESRMNT", "ESTALE", "ESTRPIPE", "ETIME", "ETIMEDOUT", "ETOOMANYREFS",
    "ETXTBSY", "EUCLEAN", "EUNATCH", "EUSERS", "EWOULDBLOCK", "EXDEV", "EXFULL",
)


@dataclass(frozen=True)
class Replacer:
    """One entry of formatters.go ``replacers``: a typed field gets a string field beside it.

    ``annotations`` None means the new field keeps the default annotations; ``kind`` restricts the
    source field's kind (the replacer skips other kinds).
    """

    name: str
    type_name: str
    target_annotation: str
    annotations: dict[str, str] | None = None
    kind: int | None = None


# In formatters.go order ("order and priority matter both"); endpoints are handled apart.
REPLACERS: tuple[Replacer | str, ...] = (
    Replacer("signal", "gadget_signal", "formatters.signal.target",
             {"value.one-of": ", ".join(SIGNAL_NAMES)}),
    Replacer("errno", "gadget_errno", "formatters.errno.target",
             {ds.TEMPLATE_ANNOTATION: "errorString", "value.one-of": ", ".join(ERRNO_NAMES)}),
    Replacer("syscall", "gadget_syscall", "formatters.syscall.target", kind=ds.KIND_UINT64),
    Replacer("timestamp", "gadget_timestamp", "formatters.timestamp.target", {ds.TEMPLATE_ANNOTATION: "timestamp"}),
    Replacer("bytes", "gadget_bytes", "formatters.bytes.target", {ds.TEMPLATE_ANNOTATION: "bytes"}),
    Replacer("duration", "gadget_duration", "formatters.duration.target", {ds.TEMPLATE_ANNOTATION: "duration"}),
    "gadget_l3endpoint_t",
    "gadget_l4endpoint_t",
    Replacer("file_mode", "gadget_file_mode", "formatters.file_mode.target", kind=ds.KIND_UINT32),
    Replacer("file_flags", "gadget_file_flags", "formatters.file_flags.target", kind=ds.KIND_UINT32),
)
COLUMNS_REPLACE = "columns.replace"  # pkg/datasource/columns.go ColumnsReplaceAnnotation
JSON_SKIP = "json.skip"  # pkg/datasource/formatters/json/json.go SkipFieldAnnotation


class _Skip(Exception):
    """A replacer refused a field; formatters.go logs it and goes on with the next one.

    Internal control flow: :func:`formatters_operator` catches it around each replacer; it never leaves
    this module."""


def formatters_operator(context: GadgetContext) -> None:
    """``formattersOperator.InstantiateDataOperator``: every replacer over every source, in table order."""
    for source in list(context.sources.values()):
        for replacer in REPLACERS:
            type_name = replacer if isinstance(replacer, str) else replacer.type_name
            for entry in source.fields_with_tag("type:" + type_name):
                try:
                    if isinstance(replacer, str):
                        _endpoint(source, entry, l4=replacer == "gadget_l4endpoint_t")
                    else:
                        _replace(source, entry, replacer)
                except _Skip:
                    continue


def _replace(source: DataSource, entry: Field, replacer: Replacer) -> None:
    if replacer.kind is not None and entry.kind != replacer.kind:
        raise _Skip
    name = target_name(entry, replacer.target_annotation)
    if name is None:
        raise _Skip
    _add_or_skip(lambda: source.add_field(name, ds.KIND_STRING, annotations=replacer.annotations,
                                          same_parent_as=entry, same_order_as=entry))
    set_field_visibility(source, entry, default_hidden=True)


def _add_or_skip(add: Callable[[], Field]) -> Field:
    try:
        return add()
    except AnalysisError:  # a name already taken: formatters.go skips the field
        raise _Skip from None


def _endpoint(source: DataSource, entry: Field, l4: bool) -> None:
    """``handleL3Endpoint`` (and the l4endpoint replacer): the raw address gives way to strings."""
    addresses = source.sub_fields_with_tag(entry, "type:gadget_ip_addr_t")
    if len(addresses) != 1:
        raise _Skip
    source.remove_reference(addresses[0], recurse=True)
    if len(source.sub_fields_with_tag(entry, "name:version")) != 1:
        raise _Skip
    address = _add_or_skip(lambda: source.add_sub_field(entry, addresses[0].name.removesuffix("_raw"),
                                                        ds.KIND_STRING))
    entry.annotations[COLUMNS_REPLACE] = address.full_name
    set_field_visibility(source, entry, default_hidden=False)
    if not l4:
        return
    if len(source.sub_fields_with_tag(entry, "name:port")) != 1:
        raise _Skip
    protocols = source.sub_fields_with_tag(entry, "name:proto_raw")
    if len(protocols) > 1:
        raise _Skip
    if protocols:
        _add_or_skip(lambda: source.add_sub_field(entry, protocols[0].name.removesuffix("_raw"), ds.KIND_STRING,
                                                  flags=ds.FLAG_HIDDEN))
    endpoint = _add_or_skip(lambda: source.add_sub_field(entry, "endpoint", ds.KIND_STRING, flags=ds.FLAG_HIDDEN,
                                                         tags=["endpoint"], annotations={JSON_SKIP: "true"}))
    entry.annotations[COLUMNS_REPLACE] = endpoint.full_name


# -- localmanager: container enrichment (pkg/datasource/compat/wrapper.go, localmanager.go) -----


@dataclass(frozen=True)
class Enrichment:
    """One sub-field ``WrapAccessors`` adds under ``k8s`` or ``runtime`` (``group``: ``k8s.owner``)."""

    group: str
    name: str
    kind: int
    order: int = 0
    annotations: dict[str, str] | None = None
    hidden: bool = False


_K8S = ("kubernetes",)
# WrapAccessors, in call order. ig's environment is "local": the k8s group is hidden as a whole.
ENRICHMENT: tuple[Enrichment, ...] = (
    Enrichment("k8s", "node", ds.KIND_STRING, -31, {ds.TEMPLATE_ANNOTATION: "node"}),
    Enrichment("k8s", "namespace", ds.KIND_STRING, -30, {ds.TEMPLATE_ANNOTATION: "namespace"}),
    Enrichment("k8s", "podName", ds.KIND_STRING, -29, {ds.TEMPLATE_ANNOTATION: "pod"}),
    Enrichment("k8s", "containerName", ds.KIND_STRING, -28, {ds.TEMPLATE_ANNOTATION: "container"}),
    Enrichment("k8s", "hostnetwork", ds.KIND_BOOL, -27, hidden=True),
    Enrichment("k8s", "podLabels", ds.KIND_STRING, -26, hidden=True),
    Enrichment("k8s.owner", "kind", ds.KIND_STRING, hidden=True),
    Enrichment("k8s.owner", "name", ds.KIND_STRING, hidden=True),
    Enrichment("runtime", "containerName", ds.KIND_STRING, -27, {ds.TEMPLATE_ANNOTATION: "container"}),
    Enrichment("runtime", "runtimeName", ds.KIND_STRING, -26, {"columns.width": "19", "columns.fixed": "true"},
               hidden=True),
    Enrichment("runtime", "containerId", ds.KIND_STRING, -25, {"columns.width": "13", "columns.maxwidth": "64"},
               hidden=True),
    Enrichment("runtime", "containerPid", ds.KIND_UINT32, -24, {ds.TEMPLATE_ANNOTATION: "containerPid"}),
    Enrichment("runtime", "containerImageName", ds.KIND_STRING, -23, hidden=True),
    Enrichment("runtime", "containerImageDigest", ds.KIND_STRING, -22, hidden=True),
    Enrichment("runtime", "containerStartedAt", ds.KIND_INT64, -21, hidden=True),
)
# common/containers-publisher.go NewContainersPublisher: the "containers" source, all default annotations.
CONTAINERS_FIELDS = (("event_type", ds.KIND_STRING), ("container_id", ds.KIND_STRING), ("cgroup_id", ds.KIND_UINT64),
                     ("mntns_id", ds.KIND_UINT64), ("name", ds.KIND_STRING), ("container_config", ds.KIND_STRING))


def localmanager_operator(context: GadgetContext) -> None:
    """``localManager.InstantiateDataOperator``: the containers source if asked for, then enrichment.

    A source with a ``gadget_mntns_id`` or ``gadget_netns_id`` field gets the ``k8s`` and
    ``runtime`` groups (``compat.GetEventWrappers``), whatever the host's container runtimes.
    """
    if go_bool(context.setting("annotations.enable-containers-datasource")):
        containers = context.register(ds.TYPE_SINGLE, "containers")
        containers.annotations["cli.default-output-mode"] = "none"
        for name, kind in CONTAINERS_FIELDS:
            containers.add_field(name, kind)
    for source in list(context.sources.values()):
        if source.fields_with_tag("type:gadget_mntns_id") or source.fields_with_tag("type:gadget_netns_id"):
            _wrap_accessors(source)


def _wrap_accessors(source: DataSource) -> None:
    groups = {"k8s": source.add_field("k8s", ds.KIND_INVALID, flags=ds.FLAG_EMPTY)}
    for item in ENRICHMENT:
        if item.group == "runtime" and "runtime" not in groups:
            source.set_hidden(groups["k8s"], True, recurse=True)
            groups["runtime"] = source.add_field("runtime", ds.KIND_INVALID, flags=ds.FLAG_EMPTY)
        if item.group == "k8s.owner" and item.group not in groups:
            groups[item.group] = source.add_sub_field(groups["k8s"], "owner", ds.KIND_INVALID, flags=ds.FLAG_EMPTY)
        source.add_sub_field(groups[item.group], item.name, item.kind, flags=ds.FLAG_HIDDEN if item.hidden else 0,
                             tags=_K8S if item.group.startswith("k8s") else (), annotations=item.annotations,
                             order=item.order)


# -- UidGidResolver (pkg/operators/uidgidresolver/uidgidresolver.go) -----------------------------

# (type tag, default name of the added field), in the order InstantiateDataOperator handles them.
UID_GID_RULES = (("gadget_uid", "user"), ("gadget_gid", "group"))
UID_GID_TARGET = "uidgidresolver.target"


def uidgidresolver_operator(context: GadgetContext) -> None:
    """Each uid/gid field gets a user/group name field beside it; both are hidden (flag only).

    Two of them in one source that both default to ``user`` make ig fail, and so do we.
    """
    for source in list(context.sources.values()):
        for type_name, default in UID_GID_RULES:
            for entry in source.fields_with_tag("type:" + type_name):
                added = source.add_field(target_name(entry, UID_GID_TARGET) or default, ds.KIND_STRING,
                                         same_parent_as=entry)
                source.set_hidden(added, True)
                source.set_hidden(entry, True)


# -- ustack (pkg/operators/ustack/ustack.go init) --------------------------------------------------

USTACK_REQUIRED = ("tgid_level0", "pid_level0", "pidns_level0", "pid_level1", "pidns_level1", "stack_id", "major",
                   "minor", "inode", "mtime_sec", "mtime_nsec", "base_addr_hash")
USTACK_ADDED = ("addresses", "buildid", "symbols")


def ustack_operator(context: GadgetContext) -> None:
    """A ``gadget_user_stack`` struct is hidden with its members and gets three hidden string sub-fields.

    Only when every member ``USTACK_REQUIRED`` names is there, once (ig warns and skips otherwise).
    """
    for source in list(context.sources.values()):
        for entry in source.fields_with_tag("type:gadget_user_stack"):
            source.set_hidden(entry, True, recurse=True)
            if any(len(source.sub_fields_with_tag(entry, "name:" + name)) != 1 for name in USTACK_REQUIRED):
                continue
            for name in USTACK_ADDED:
                existing = source.sub_fields_with_tag(entry, "name:" + name)
                if existing and "operator:ustack" not in existing[0].tags:
                    raise AnalysisError(f"field {name!r} exists but does not belong to the ustack operator")
                if not existing:
                    source.add_sub_field(entry, name, ds.KIND_STRING, flags=ds.FLAG_HIDDEN,
                                         tags=["name:" + name, "operator:ustack"])


# -- process (pkg/operators/process/process.go) ----------------------------------------------------

_RIGHT = {"columns.alignment": "right"}


@dataclass(frozen=True)
class Added:
    """A field an operator adds with ``AddField``: name, kind, ``WithAnnotations`` (None: defaults), tags."""

    name: str
    kind: int
    annotations: dict[str, str] | None = None
    tags: tuple[str, ...] = ()


# Per name in ``operator.process.fields`` (all of them, in this order, when none is listed): the
# fields it adds. ``pid`` comes first and ``mountnsid`` last whatever is listed.
PROCESS_FIELDS: dict[str, tuple[Added, ...]] = {
    "ppid": (Added("ppid", ds.KIND_INT32, {ds.TEMPLATE_ANNOTATION: "ppid"}),),
    "comm": (Added("comm", ds.KIND_STRING, {ds.TEMPLATE_ANNOTATION: "comm"}),),
    "priority": (Added("priority", ds.KIND_INT8, {**_RIGHT, "description": "The priority of the process."}),),
    "nice": (Added("nice", ds.KIND_INT8, {**_RIGHT, "description": "The nice value of the process."}),),
    "cpuUsage": (Added("cpuUsage", ds.KIND_FLOAT64, {
        "columns.precision": "1", **_RIGHT, "description": "The CPU usage of the process as a percentage.",
        "columns.maxwidth": "8"}),),
    "cpuUsageRelative": (Added("cpuUsageRelative", ds.KIND_FLOAT64, {
        "columns.precision": "1", **_RIGHT,
        "description": "The CPU usage percentage relative to the number of CPUs available.",
        "columns.maxwidth": "8"}),),
    "memoryRSS": (Added("memoryRSS_raw", ds.KIND_UINT64, {
        **_RIGHT, "description": "The Resident Set Size (RSS) of the process in bytes. This represents the portion "
                                 "of memory occupied by a process that is held in main memory (RAM)."},
        ("type:gadget_bytes",)),),
    "memoryVirtual": (Added("memoryVirtual_raw", ds.KIND_UINT64, {
        **_RIGHT, "description": "The Virtual Memory Size of the process in bytes. This represents the total "
                                 "amount of virtual memory used by the process."},
        ("type:gadget_bytes",)),),
    "memoryShared": (Added("memoryShared_raw", ds.KIND_UINT64, {
        **_RIGHT, "description": "The Shared Memory Size of the process in bytes."}, ("type:gadget_bytes",)),),
    "memoryRelative": (Added("memoryRelative", ds.KIND_FLOAT64, {
        **_RIGHT, "columns.precision": "1",
        "description": "Percentage of RSS memory used relative to available memory.", "columns.maxwidth": "8"}),),
    "threadCount": (Added("threadCount", ds.KIND_INT32, {
        **_RIGHT, "description": "The number of threads used by the process.", "columns.maxwidth": "11"}),),
    "state": (Added("state", ds.KIND_STRING, {
        "description": 'The state of the process (e.g., "R" for running, "S" for sleeping, "Z" for zombie, etc.).',
        "value.one-of": "R,S,D,Z,T,t,W,X,x,K,W,P,I", "columns.maxwidth": "5"}),),
    "uid": (Added("uid", ds.KIND_UINT32, {ds.TEMPLATE_ANNOTATION: "uid"}),),
    "startTime": (
        Added("startTime", ds.KIND_UINT64, {
            "description": "The time when the process started, represented as clock ticks since system boot.",
            "columns.hidden": "true"}),
        Added("startTimeStr", ds.KIND_STRING, {
            "description": "The time when the process started, represented as a formatted date-time string in "
                           'RFC3339 format (e.g., "2023-06-15T14:30:45Z").',
            "columns.ellipsis": "start", "columns.maxwidth": "25"})),
    "cpuTime": (
        Added("cpuTime", ds.KIND_INT64, {"columns.hidden": "true", "description": "Total CPU time"}),
        Added("cpuTimeStr", ds.KIND_STRING, {"description": "Total CPU time, formatted as duration", **_RIGHT,
                                             "columns.maxwidth": "12"})),
}
PROCESS_FIELDS["startTimeStr"] = PROCESS_FIELDS["startTime"]
PROCESS_DEFAULT_ORDER = ("pid", "ppid", "comm", "priority", "nice", "cpuUsage", "cpuUsageRelative", "memoryRSS",
                         "memoryVirtual", "memoryShared", "memoryRelative", "threadCount", "state", "uid",
                         "startTime", "cpuTime")
PROCESS_FIRST = Added("pid", ds.KIND_INT32, {ds.TEMPLATE_ANNOTATION: "pid"})
MOUNTNS_LAST = Added("mountnsid", ds.KIND_UINT64, {ds.TEMPLATE_ANNOTATION: "mntns_id"}, ("type:gadget_mntns_id",))


def process_operator(context: GadgetContext) -> None:
    """With ``operator.process.emitstats``: the ``processes`` array source and its fields."""
    if not go_bool(context.setting("operator.process.emitstats")):
        return
    source = context.register(ds.TYPE_ARRAY, "processes")
    source.annotations["fetch-interval"] = go_duration_string(
        _interval(context.setting("operator.process.interval"), 60 * _SECOND))
    listed = ds.string_list(context.setting("operator.process.fields")) or list(PROCESS_DEFAULT_ORDER)
    _add_all(source, [PROCESS_FIRST, *(item for name in listed for item in PROCESS_FIELDS.get(name, ())),
                      MOUNTNS_LAST])


def _add_all(source: DataSource, fields: list[Added]) -> None:
    for item in fields:
        source.add_field(item.name, item.kind, annotations=item.annotations, tags=item.tags)


# -- cgroup (pkg/operators/cgroup/cgroup.go registerFields) ---------------------------------------

_DURATION_TAG = ("type:gadget_duration",)
CGROUP_FIELDS = (
    Added("cgroupPath", ds.KIND_STRING, {"description": "The cgroup v2 path.", "columns.maxwidth": "60",
                                         "columns.ellipsis": "start"}),
    Added("nrPeriods", ds.KIND_UINT64, {
        "description": "Number of CFS enforcement intervals elapsed in this reporting period.", **_RIGHT,
        "columns.maxwidth": "10"}),
    Added("nrThrottled", ds.KIND_UINT64, {
        "description": "Number of times the cgroup was throttled in this reporting period.", **_RIGHT,
        "columns.maxwidth": "12"}),
    Added("throttledTime_raw", ds.KIND_UINT64, {
        "description": "Total time spent throttled in this reporting period.", **_RIGHT, "columns.maxwidth": "14"},
        _DURATION_TAG),
    Added("throttleRatio", ds.KIND_FLOAT64, {
        "description": "Percentage of periods where the cgroup was throttled (0-100) in this reporting period.",
        **_RIGHT, "columns.precision": "2", "columns.maxwidth": "8"}),
    Added("cpuQuota_raw", ds.KIND_UINT64, {"description": "CPU quota per CFS period.", **_RIGHT,
                                           "columns.maxwidth": "10"}, _DURATION_TAG),
    Added("cpuPeriod_raw", ds.KIND_UINT64, {"description": "CFS period length.", **_RIGHT, "columns.maxwidth": "10",
                                            "columns.hidden": "true"}, _DURATION_TAG),
    Added("cpuLimitCores", ds.KIND_FLOAT64, {"description": "Effective CPU core limit (quota / period).", **_RIGHT,
                                             "columns.precision": "2", "columns.maxwidth": "8"}),
    Added("psiSomeAvg10", ds.KIND_FLOAT64, {"description": "PSI 'some' CPU pressure average over 10 seconds.",
                                            **_RIGHT, "columns.precision": "2", "columns.maxwidth": "8"}),
    Added("psiSomeAvg60", ds.KIND_FLOAT64, {"description": "PSI 'some' CPU pressure average over 60 seconds.",
                                            **_RIGHT, "columns.precision": "2", "columns.maxwidth": "8"}),
    MOUNTNS_LAST,
)


def cgroup_operator(context: GadgetContext) -> None:
    """With ``operator.cgroup.emitstats``: the ``cgroups`` array source and its fields."""
    if not go_bool(context.setting("operator.cgroup.emitstats")):
        return
    source = context.register(ds.TYPE_ARRAY, "cgroups")
    source.annotations["fetch-interval"] = go_duration_string(
        _interval(context.setting("operator.cgroup.interval"), 5 * _SECOND))
    _add_all(source, list(CGROUP_FIELDS))


# -- ebpf data operator: gadget statistics (pkg/operators/ebpf/stats.go InstantiateDataOperator) ---

_COUNTER, _GAUGE, _KEY = {"metrics.type": "counter"}, {"metrics.type": "gauge"}, {"metrics.type": "key"}
STATS_FIELDS = (
    Added("gadgetID", ds.KIND_STRING, {"columns.width": "8",
                                       "description": "Unique ID assigned to each Gadget instance"}),
    Added("gadgetName", ds.KIND_STRING, {"columns.width": "16", "description": "Name of the Gadget instance",
                                         **_KEY}),
    Added("gadgetImage", ds.KIND_STRING, {
        "columns.width": "16", "description": "Name of the Gadget image (like trace_open, trace_exec, etc.)",
        **_KEY}),
    Added("progID", ds.KIND_UINT32, {**_RIGHT, "description": "eBPF program ID assigned by the Linux kernel",
                                     "columns.width": "5"}),
    Added("progName", ds.KIND_STRING, {"columns.fixed": "16", "description": "Name of the eBPF program", **_KEY}),
    Added("progType", ds.KIND_STRING, {"columns.width": "16", "description": "Type of the eBPF program"}),
    Added("cpuUsage", ds.KIND_FLOAT64, {"columns.alias": "%CPU", "columns.precision": "2", **_RIGHT,
                                        "description": "CPU usage percentage of the eBPF program",
                                        "columns.width": "8"}),
    Added("cpuUsageRelative", ds.KIND_FLOAT64, {
        "columns.alias": "%RELCPU", "columns.precision": "2", **_RIGHT,
        "description": "CPU usage relative to the number of available CPUs", "columns.width": "8"}),
    Added("cpuTimeStr", ds.KIND_STRING, {"columns.alias": "TIME+", **_RIGHT,
                                         "description": "Total CPU time formatted as duration",
                                         "columns.width": "12"}),
    Added("runtime_raw", ds.KIND_UINT64, {
        "columns.width": "12", **_RIGHT,
        "description": "Time that the eBPF program or Gadget has run in nanoseconds", **_COUNTER}, _DURATION_TAG),
    Added("runcount", ds.KIND_UINT64, {"columns.width": "12", **_RIGHT,
                                       "description": "Number of times the eBPF program or Gadget has run",
                                       **_COUNTER}),
    Added("mapMemory_raw", ds.KIND_UINT64, {"columns.width": "12", **_RIGHT,
                                            "description": "Memory used by maps in bytes", **_GAUGE},
          ("type:gadget_bytes",)),
    Added("mapCount", ds.KIND_UINT64, {"columns.width": "5", **_RIGHT,
                                       "description": "Number of maps used by the eBPF program or Gadget",
                                       **_GAUGE}),
    Added("comms", ds.KIND_STRING, {"columns.width": "16",
                                    "description": "List of processes using the eBPF program"}),
    Added("pids", ds.KIND_STRING, {"columns.width": "16", "description": "List of PIDs using the eBPF program"}),
)
STATS_INTERVAL = "1000ms"  # the ``statistics-interval`` instance param's default, used as written


def ebpf_stats_operator(context: GadgetContext) -> None:
    """With ``operator.ebpf.emitstats``: the ``bpfstats`` source (``nodeName`` needs NODE_NAME: left out)."""
    if not go_bool(context.setting("operator.ebpf.emitstats")):
        return
    source = context.register(ds.TYPE_ARRAY, "bpfstats")
    source.annotations["fetch-interval"] = STATS_INTERVAL
    source.annotations["cli.clear-screen-before"] = "true"
    _add_all(source, list(STATS_FIELDS))


# -- the operators of ``ig``, in instantiation order -------------------------------------------------


@dataclass(frozen=True)
class DataOperator:
    priority: int
    name: str
    apply: Callable[[GadgetContext], None] | None
    why_not: str = ""


# After the oci handler (priority -1000, "oci" < "process"), which runs the image operators.
DATA_OPERATORS: tuple[DataOperator, ...] = (
    DataOperator(-1000, "process", process_operator),
    DataOperator(-900, "cgroup", cgroup_operator),
    DataOperator(-1, "LocalManager", localmanager_operator),
    DataOperator(0, "ebpf", ebpf_stats_operator),
    DataOperator(0, "formatters", formatters_operator),
    DataOperator(1, "env", None, "adds fields only for variables ig's own configuration allows"),
    DataOperator(5, "UidGidResolver", uidgidresolver_operator),
    DataOperator(10, "SocketEnricher", None, "adds no fields"),
    DataOperator(100, "ustack", ustack_operator),
    DataOperator(9000, "filter", None, "adds no fields"),
    DataOperator(9500, "sort", None, "adds no fields"),
    DataOperator(9998, "logs", None, "adds no fields"),
    DataOperator(9999, "otel-profiles", None, "adds no fields"),
)


def run_data_operators(context: GadgetContext) -> None:
    for operator in DATA_OPERATORS:
        if operator.apply is not None:
            operator.apply(context)


# -- viper / Go value conversions ---------------------------------------------------------------------

_SECOND = 1_000_000_000
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": _SECOND, "m": 60 * _SECOND,
          "h": 3600 * _SECOND}
_DURATION = re.compile(r"([0-9]*(?:\.[0-9]*)?)([a-zµμ]+)")


def go_bool(value: object) -> bool:
    """viper's ``GetBool`` (cast.ToBool): YAML booleans, and strconv.ParseBool's spellings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    try:
        return isinstance(value, str) and parse_bool(value)
    except ValueError:
        return False


def _interval(value: object, default: int) -> int:
    """viper's ``GetDuration`` (cast.ToDuration; 0 when unparsable), then the operator's default if <= 0."""
    duration = go_parse_duration(value)
    return duration if duration > 0 else default


def go_parse_duration(value: object) -> int:
    """Nanoseconds of a YAML value as cast.ToDuration reads it: numbers are nanoseconds, text as Go's
    ``time.ParseDuration`` (with ``ns`` appended when it has no unit); 0 when it does not parse."""
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value)
    if not any(unit in text for unit in "nsuµmh"):
        text += "ns"
    sign, body = (-1, text[1:]) if text[:1] == "-" else (1, text.removeprefix("+"))
    if body == "0":
        return 0
    total = Fraction(0)
    position = 0
    while position < len(body):
        match = _DURATION.match(body, position)
        if match is None or match.group(1) in ("", ".") or match.group(2) not in _UNITS:
            return 0
        total += Fraction(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    return sign * int(total) if body else 0


def go_duration_string(nanoseconds: int) -> str:
    """Go's ``time.Duration.String`` (``1m0s``, ``250ms``, ``1.5s``)."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    value = abs(nanoseconds)
    if value < _SECOND:
        for limit, scale, unit in ((1_000, 1, "ns"), (1_000_000, 1_000, "µs"), (_SECOND, 1_000_000, "ms")):
            if value < limit:
                return sign + _fraction(value, scale) + unit
    seconds, rest = divmod(value, _SECOND)
    text = _fraction(seconds % 60 * _SECOND + rest, _SECOND) + "s"
    minutes = seconds // 60
    if minutes:
        text = f"{minutes % 60}m{text}"
        if minutes // 60:
            text = f"{minutes // 60}h{text}"
    return sign + text


def _fraction(value: int, scale: int) -> str:
    whole, part = divmod(value, scale)
    digits = str(part).rjust(len(str(scale)) - 1, "0").rstrip("0") if scale > 1 else ""
    return f"{whole}.{digits}" if digits else str(whole)
