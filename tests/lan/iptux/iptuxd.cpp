// iptuxd -- a scriptable, headless iptux peer built on Debian's libiptux-core
// (the protocol engine of the iptux 0.8.3 GUI; same code, no GTK).
//
// Build:  g++ -std=c++17 -O1 -o iptuxd iptuxd.cpp $(pkg-config --cflags --libs iptux-core) -lpthread
// Run ONLY inside a test network namespace, always under `timeout`:
//   ip netns exec ipx1 timeout 120 ./iptuxd --config /tmp/h1/.iptux/config.json
//        --auto-accept /tmp/h1/inbox
//
// stdin: one command per line (UTF-8):
//   msg IP TEXT...            send a text message (blocking: iptux retries 4x/1s until RECVMSG)
//   msg64 IP BASE64           same, text given as base64 (for newlines etc.)
//   send IP PATH              offer one file or folder (rest of line = path)
//   sendmany IP P1<TAB>P2...  offer several files/folders in one SENDMSG|FILEATTACHOPT
//   accept OID [DIR]          download pending offer OID (from an "offer" event)
//   acceptall [DIR]           download every pending offer
//   detect IP                 unicast BR_ENTRY to IP (iptux "detect pal")
//   entry                     re-broadcast BR_ENTRY (as at start-up)
//   pals | tasks              dump pal list / transfer tasks
//   sleep SECS                pause command processing
//   saveconfig                ProgramData::WriteProgData() -> rewrite --config with all core keys
//   quit                      CoreThread::stop() (unicast BR_EXIT to every known pal), exit 0
// stdout: one JSON object per line ("ev" = ready, pal-online, pal-update, pal-offline,
//   message, offer, recv-start, recv-done, send-start, send-done, result, exit ...).
// SIGTERM / SIGINT / SIGHUP and EOF on stdin (unless --keep-on-eof) behave like "quit".
#include <iptux-core/CoreThread.h>
#include <iptux-core/Event.h>
#include <iptux-core/Exception.h>
#include <iptux-core/IptuxConfig.h>
#include <iptux-core/Models.h>
#include <iptux-core/ProgramData.h>

#include <glib.h>
#include <json/json.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <chrono>
#include <cstring>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace iptux;
using namespace std;

static mutex outMutex;
static auto T0 = chrono::steady_clock::now();
static atomic<bool> quitting{false};

static void emitJson(Json::Value v) {
  v["t"] = chrono::duration<double>(chrono::steady_clock::now() - T0).count();
  Json::StreamWriterBuilder b;
  b["indentation"] = "";
  b["emitUTF8"] = true;
  string s = Json::writeString(b, v);
  lock_guard<mutex> l(outMutex);
  cout << s << "\n" << flush;
}

static string bytesHex(const string& s) {
  static const char* d = "0123456789abcdef";
  string r;
  for (unsigned char c : s) { r += d[c >> 4]; r += d[c & 15]; }
  return r;
}

static Json::Value palJson(const PalInfo& p) {
  Json::Value v;
  v["ip"] = inet_ntoa(p.ipv4);
  v["name"] = p.getName();
  v["user"] = p.getUser();
  v["host"] = p.getHost();
  v["group"] = p.getGroup();
  v["version"] = p.getVersion();
  v["encode"] = p.getEncode();
  v["compatible"] = p.isCompatible();
  v["online"] = p.isOnline();
  return v;
}

struct Offer {
  int oid;
  FileInfo* file;  // owned; kept alive for RecvFileAsync
  bool taken = false;
};

static shared_ptr<CoreThread> core;
static mutex offersMutex;
static map<int, Offer> offers;
static int nextOid = 1;
static string autoAcceptDir;
static uint32_t nextFileId = 10000;  // GUI starts private file ids at MAX_SHAREDFILE (10000)
static map<int, string> taskKind;     // taskId -> "recv"/"send"

static int64_t treeSize(const string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return 0;
  if (S_ISREG(st.st_mode)) return st.st_size;
  if (!S_ISDIR(st.st_mode)) return 0;
  int64_t sum = 0;
  GDir* d = g_dir_open(path.c_str(), 0, nullptr);
  if (!d) return 0;
  const char* n;
  while ((n = g_dir_read_name(d))) sum += treeSize(path + "/" + n);
  g_dir_close(d);
  return sum;
}

static void taskEvent(const char* ev, int taskId) {
  Json::Value v;
  v["ev"] = ev;
  v["taskId"] = taskId;
  auto m = core->GetTransTaskStat(taskId);
  if (m) {
    v["status"] = m->getStatus();  // tip-recv / tip-send / tip-finish / tip-error
    v["task"] = m->getTask();
    v["peer"] = m->getPeer();
    v["ip"] = m->getIp();
    v["filename"] = m->getFilename();
    v["path"] = m->getFilePath();
    v["length"] = Json::Int64(m->getFileLength());
    v["finished"] = m->isFinished();
    v["ok"] = m->getStatus() == "tip-finish";
  }
  emitJson(v);
}

static bool acceptOffer(int oid, const string& dir, string& err) {
  FileInfo* f;
  {
    lock_guard<mutex> l(offersMutex);
    auto it = offers.find(oid);
    if (it == offers.end()) { err = "no such offer"; return false; }
    if (it->second.taken) { err = "already accepted"; return false; }
    it->second.taken = true;
    f = it->second.file;
  }
  g_mkdir_with_parents(dir.c_str(), 0755);
  gchar* base = g_path_get_basename(f->filepath);  // offered name
  string dest = dir + "/" + base;
  g_free(base);
  g_free(f->filepath);
  f->filepath = g_strdup(dest.c_str());
  Json::Value v;
  v["ev"] = "accepting";
  v["oid"] = oid;
  v["path"] = dest;
  emitJson(v);
  core->RecvFileAsync(f);
  return true;
}

// iptux calls signalEvent from its own threads, sometimes while holding its
// internal mutexes; calling back into CoreThread from there deadlocks. So the
// callback only queues the event and a dedicated thread handles it.
static mutex evMutex;
static condition_variable evCond;
static deque<shared_ptr<const Event>> evQueue;

static void onEventQueued(shared_ptr<const Event> e) {
  lock_guard<mutex> l(evMutex);
  evQueue.push_back(e);
  evCond.notify_one();
}

static void handleEvent(shared_ptr<const Event> e);
static void eventLoop() {
  for (;;) {
    shared_ptr<const Event> e;
    {
      unique_lock<mutex> l(evMutex);
      evCond.wait(l, [] { return !evQueue.empty(); });
      e = evQueue.front();
      evQueue.pop_front();
    }
    handleEvent(e);
  }
}

static void handleEvent(shared_ptr<const Event> e) {
  Json::Value v;
  switch (e->getType()) {
    case EventType::NEW_PAL_ONLINE: {
      auto pal = static_cast<const NewPalOnlineEvent*>(e.get())->getPalInfo();
      v = palJson(*pal);
      v["ev"] = "pal-online";
      break;
    }
    case EventType::PAL_UPDATE: {
      auto pal = static_cast<const PalUpdateEvent*>(e.get())->getPalInfo();
      v = palJson(*pal);
      v["ev"] = "pal-update";
      break;
    }
    case EventType::PAL_OFFLINE: {
      auto& k = static_cast<const PalOfflineEvent*>(e.get())->GetPalKey();
      v["ev"] = "pal-offline";
      v["ip"] = k.GetIpv4String();
      break;
    }
    case EventType::NEW_MESSAGE: {
      auto& para = static_cast<const NewMessageEvent*>(e.get())->getMsgPara();
      v["ev"] = "message";
      v["source"] = para.stype == MessageSourceType::PAL    ? "pal"
                    : para.stype == MessageSourceType::SELF ? "self"
                                                            : "error";
      v["btype"] = int(para.btype);
      if (para.getPal()) v["ip"] = inet_ntoa(para.getPal()->ipv4);
      string text;
      for (auto& c : para.dtlist) {
        if (c.type == MessageContentType::STRING) text += c.data;
        else v["pictures"].append(c.data);
      }
      if (g_utf8_validate(text.data(), text.size(), nullptr)) {
        v["text"] = text;
      } else {  // e.g. GBK bytes from a peer that claimed utf-8: keep JSON valid
        gchar* fixed = g_utf8_make_valid(text.data(), text.size());
        v["text"] = fixed;
        g_free(fixed);
        v["invalid_utf8"] = true;
      }
      v["text_hex"] = bytesHex(text);
      break;
    }
    case EventType::NEW_SHARE_FILE_FROM_FRIEND: {
      auto& fi = static_cast<const NewShareFileFromFriendEvent*>(e.get())->GetFileInfo();
      int oid;
      {
        lock_guard<mutex> l(offersMutex);
        oid = nextOid++;
        offers[oid] = Offer{oid, new FileInfo(fi)};
      }
      v["ev"] = "offer";
      v["oid"] = oid;
      v["ip"] = fi.fileown ? inet_ntoa(fi.fileown->ipv4) : "";
      v["fileid"] = fi.fileid;
      v["packetn"] = fi.packetn;
      v["name"] = fi.filepath ? fi.filepath : "";
      v["size"] = Json::Int64(fi.filesize);
      v["attr"] = fi.fileattr == FileAttr::REGULAR     ? "file"
                  : fi.fileattr == FileAttr::DIRECTORY ? "dir"
                                                       : "unknown";
      v["ctime"] = fi.filectime;
      emitJson(v);
      if (!autoAcceptDir.empty()) {
        string err;
        if (!acceptOffer(oid, autoAcceptDir, err)) {
          Json::Value r;
          r["ev"] = "accept-error";
          r["oid"] = oid;
          r["err"] = err;
          emitJson(r);
        }
      }
      return;
    }
    case EventType::RECV_FILE_STARTED:
      taskEvent("recv-start", static_cast<const RecvFileStartedEvent*>(e.get())->GetTaskId());
      return;
    case EventType::RECV_FILE_FINISHED:
      taskEvent("recv-done", static_cast<const RecvFileFinishedEvent*>(e.get())->GetTaskId());
      return;
    case EventType::SEND_FILE_STARTED:
      taskEvent("send-start", static_cast<const SendFileStartedEvent*>(e.get())->GetTaskId());
      return;
    case EventType::SEND_FILE_FINISHED:
      taskEvent("send-done", static_cast<const SendFileFinishedEvent*>(e.get())->GetTaskId());
      return;
    case EventType::TRANS_TASKS_CHANGED:
      return;  // noisy
    case EventType::ICON_UPDATE:
      v["ev"] = "icon-update";
      v["ip"] = static_cast<const IconUpdateEvent*>(e.get())->GetPalKey().GetIpv4String();
      break;
    case EventType::PASSWORD_REQUIRED:
      v["ev"] = "password-required";
      break;
    case EventType::PERMISSION_REQUIRED:
      v["ev"] = "permission-required";
      break;
    case EventType::CONFIG_CHANGED:
      v["ev"] = "config-changed";
      break;
  }
  emitJson(v);
}

static PPalInfo palOrNull(const string& ip) {
  return core->GetPal(ip);
}

static bool offerFiles(const string& ip, const vector<string>& paths, string& err) {
  auto pal = palOrNull(ip);
  if (!pal) { err = "unknown pal " + ip + " (not seen yet; try 'detect IP')"; return false; }
  vector<FileInfo*> files;
  uint32_t filenum = 0;
  Json::Value ids(Json::arrayValue);
  for (auto& p : paths) {
    struct stat st;
    if (stat(p.c_str(), &st) != 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
      err = "not a regular file or directory: " + p;
      return false;
    }
    auto f = make_shared<FileInfo>();
    f->fileid = nextFileId++;
    f->fileattr = S_ISREG(st.st_mode) ? FileAttr::REGULAR : FileAttr::DIRECTORY;
    f->filesize = treeSize(p);
    f->filepath = g_strdup(p.c_str());
    f->filectime = uint32_t(st.st_ctime);
    f->filemtime = uint32_t(st.st_mtime);
    f->filenum = filenum++;
    f->fileown = pal;
    core->Lock();
    core->AddPrivateFile(f);
    core->Unlock();
    files.push_back(f.get());
    Json::Value fj;
    fj["fileid"] = f->fileid;
    fj["path"] = p;
    fj["size"] = Json::Int64(f->filesize);
    fj["attr"] = S_ISREG(st.st_mode) ? "file" : "dir";
    ids.append(fj);
  }
  vector<const PalInfo*> pals{pal.get()};
  core->BcstFileInfoEntry(pals, files);
  Json::Value v;
  v["ev"] = "offered";
  v["ip"] = ip;
  v["files"] = ids;
  emitJson(v);
  return true;
}

static void result(const string& cmd, bool ok, const string& err = "") {
  Json::Value v;
  v["ev"] = "result";
  v["cmd"] = cmd;
  v["ok"] = ok;
  if (!err.empty()) v["err"] = err;
  emitJson(v);
}

static void doQuit(const char* why) {
  bool expected = false;
  if (!quitting.compare_exchange_strong(expected, true)) return;
  Json::Value v;
  v["ev"] = "stopping";
  v["why"] = why;
  emitJson(v);
  try {
    core->stop();  // sends BR_EXIT (unicast) to every pal in the list, closes sockets
  } catch (...) {
  }
  Json::Value x;
  x["ev"] = "exit";
  emitJson(x);
  _exit(0);  // iptux-core worker threads may still be parked; do not run destructors
}

static void handleLine(const string& line) {
  istringstream is(line);
  string cmd;
  is >> cmd;
  if (cmd.empty() || cmd[0] == '#') return;
  auto rest = [&]() {
    string r;
    getline(is, r);
    size_t i = r.find_first_not_of(" \t");
    return i == string::npos ? string() : r.substr(i);
  };
  string err;
  if (cmd == "msg" || cmd == "msg64") {
    string ip;
    is >> ip;
    string text = rest();
    if (cmd == "msg64") {
      gsize n = 0;
      guchar* d = g_base64_decode(text.c_str(), &n);
      text.assign((const char*)d, n);
      g_free(d);
    }
    auto pal = palOrNull(ip);
    if (!pal) return result(cmd, false, "unknown pal " + ip);
    // SendMessage blocks up to ~4 s when the peer does not ack; run it off the command thread
    auto started = chrono::steady_clock::now();
    thread([cmd, ip, text, pal, started]() {
      bool ok = false;
      string e;
      try {
        // blocks: sends, sleeps send_message_retry_in_us, re-sends (max 4 sends)
        // until RECVMSG; the return value is true even if never acknowledged
        ok = core->SendMessage(pal, text);
      } catch (Exception& ex) {
        e = ex.what();
      }
      Json::Value v;
      v["ev"] = "sent-msg";
      v["ip"] = ip;
      v["ok"] = ok;
      // PalInfo::rpacketn = packet number still waiting for RECVMSG (0 = acknowledged)
      v["acked"] = ok && pal->rpacketn == 0;
      v["elapsed"] = chrono::duration<double>(chrono::steady_clock::now() - started).count();
      v["text"] = text;
      if (!e.empty()) v["err"] = e;
      emitJson(v);
    }).detach();
    return;
  }
  if (cmd == "pic") {  // a picture pasted into the chat: TCP SENDSUBLAYER|MSGPICOPT
    string ip;
    is >> ip;
    string path = rest();
    auto pal = palOrNull(ip);
    if (!pal) return result(cmd, false, "unknown pal " + ip);
    bool ok = false;
    try {
      ok = core->SendMessage(pal, ChipData(MESSAGE_CONTENT_TYPE_PICTURE, path));
    } catch (Exception& ex) {
      err = ex.what();
    }
    return result(cmd, ok, err);
  }
  if (cmd == "unit") {  // a group window's text: 0xFB with OPT (e.g. 768 = IPTUX_GROUPOPT)
    string ip;
    unsigned opt = 0;
    is >> ip >> opt;
    string text = rest();
    auto pal = palOrNull(ip);
    if (!pal) return result(cmd, false, "unknown pal " + ip);
    try {
      core->SendUnitMessage(pal->GetKey(), opt, text);
    } catch (Exception& ex) {
      return result(cmd, false, ex.what());
    }
    return result(cmd, true, err);
  }
  if (cmd == "send") {
    string ip;
    is >> ip;
    string p = rest();
    bool ok = offerFiles(ip, {p}, err);
    return result(cmd, ok, err);
  }
  if (cmd == "sendmany") {
    string ip;
    is >> ip;
    string r = rest();
    vector<string> ps;
    gchar** parts = g_strsplit(r.c_str(), "\t", -1);
    for (int i = 0; parts[i]; i++)
      if (*parts[i]) ps.push_back(parts[i]);
    g_strfreev(parts);
    bool ok = offerFiles(ip, ps, err);
    return result(cmd, ok, err);
  }
  if (cmd == "accept") {
    int oid = 0;
    is >> oid;
    string dir = rest();
    if (dir.empty()) dir = autoAcceptDir.empty() ? core->getProgramData()->path : autoAcceptDir;
    bool ok = acceptOffer(oid, dir, err);
    return result(cmd, ok, err);
  }
  if (cmd == "acceptall") {
    string dir = rest();
    if (dir.empty()) dir = autoAcceptDir.empty() ? core->getProgramData()->path : autoAcceptDir;
    vector<int> ids;
    {
      lock_guard<mutex> l(offersMutex);
      for (auto& kv : offers)
        if (!kv.second.taken) ids.push_back(kv.first);
    }
    bool ok = true;
    for (int id : ids) ok = acceptOffer(id, dir, err) && ok;
    return result(cmd, ok, err);
  }
  if (cmd == "detect") {
    string ip;
    is >> ip;
    core->SendDetectPacket(ip);
    return result(cmd, true);
  }
  if (cmd == "entry") {
    CoreThread::SendNotifyToAll(core.get());
    return result(cmd, true);
  }
  if (cmd == "pals") {
    Json::Value v;
    v["ev"] = "pals";
    v["pals"] = Json::Value(Json::arrayValue);
    core->Lock();
    for (auto& p : core->GetPalList()) v["pals"].append(palJson(*p));
    core->Unlock();
    emitJson(v);
    return;
  }
  if (cmd == "tasks") {
    Json::Value v;
    v["ev"] = "tasks";
    v["tasks"] = Json::Value(Json::arrayValue);
    for (auto& m : core->listTransTasks()) {
      Json::Value t;
      t["taskId"] = m->getTaskId();
      t["status"] = m->getStatus();
      t["task"] = m->getTask();
      t["path"] = m->getFilePath();
      t["length"] = Json::Int64(m->getFileLength());
      t["finished"] = m->isFinished();
      v["tasks"].append(t);
    }
    emitJson(v);
    return;
  }
  if (cmd == "sleep") {
    double s = 0;
    is >> s;
    this_thread::sleep_for(chrono::duration<double>(s));
    return result(cmd, true);
  }
  if (cmd == "saveconfig") {  // write every core key (with current values) to --config
    core->getProgramData()->WriteProgData();
    return result(cmd, true);
  }
  if (cmd == "quit") doQuit("quit command");
  result(cmd, false, "unknown command");
}

static void usage() {
  cerr << "usage: iptuxd --config PATH [--auto-accept DIR] [--keep-on-eof] [--write-config]\n"
          "  config.json: same file/keys as the iptux GUI (~/.iptux/config.json)\n";
  exit(2);
}

int main(int argc, char** argv) {
  string configPath;
  bool keepOnEof = false;
  bool writeConfig = false;
  for (int i = 1; i < argc; i++) {
    string a = argv[i];
    if (a == "--config" && i + 1 < argc) configPath = argv[++i];
    else if (a == "--auto-accept" && i + 1 < argc) autoAcceptDir = argv[++i];
    else if (a == "--keep-on-eof") keepOnEof = true;
    else if (a == "--write-config") writeConfig = true;
    else usage();
  }
  if (configPath.empty()) usage();

  // Signals: handled synchronously by a dedicated thread -> graceful stop (BR_EXIT).
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // NB: IptuxConfig::newFromFile() is declared in the header but NOT exported by
  // libiptux-core.so.0.8.3 -> use the public constructor (same behaviour).
  auto config = make_shared<IptuxConfig>(configPath);
  auto progdt = make_shared<ProgramData>(config);
  if (writeConfig) {  // no networking: just merge defaults into the file and exit
    progdt->WriteProgData();
    return 0;
  }
  core = make_shared<CoreThread>(progdt);
  thread(eventLoop).detach();
  core->signalEvent.connect(sigc::ptr_fun(&onEventQueued));
  try {
    core->start();  // binds UDP+TCP, broadcasts BR_ENTRY, starts receiver threads
  } catch (Exception& e) {
    Json::Value v;
    v["ev"] = "start-failed";
    v["err"] = e.what();
    emitJson(v);
    return 1;
  }
  {
    Json::Value v;
    v["ev"] = "ready";
    v["nick"] = progdt->nickname;
    v["group"] = progdt->mygroup;
    v["port"] = config->GetInt("port", 2425);
    v["bind_ip"] = config->GetString("bind_ip", "0.0.0.0");
    v["archive_path"] = progdt->path;
    emitJson(v);
  }
  thread([set]() {
    int sig = 0;
    sigwait(&set, &sig);
    doQuit(sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "SIGHUP");
  }).detach();

  string line;
  while (getline(cin, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    try {
      handleLine(line);
    } catch (exception& e) {
      result("?", false, e.what());
    }
  }
  if (keepOnEof) {
    for (;;) pause();
  }
  doQuit("stdin EOF");
  return 0;
}
