#include "proxy/body_buffer.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace sluice::proxy {
namespace {

// An anonymous file: O_TMPFILE where the file system has it, else a named
// one unlinked at once. Either way nothing is left behind on a crash.
int open_temp_file(std::string& error) {
    const char* dir = std::getenv("TMPDIR");
    if (dir == nullptr || *dir == '\0')
        dir = "/tmp";
    int fd = ::open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    std::string name = std::string(dir) + "/sluice-body-XXXXXX";
    fd = ::mkostemp(name.data(), O_CLOEXEC);
    if (fd < 0) {
        error =
            "cannot create a temporary file in " + std::string(dir) + ": " + std::strerror(errno);
        return -1;
    }
    ::unlink(name.c_str());
    return fd;
}

} // namespace

body_buffer::~body_buffer() {
    clear();
}

bool body_buffer::append(std::string_view data, std::string& error) {
    if (fd_ < 0 && memory_.size() + data.size() <= memory_limit_) {
        memory_.append(data);
        return true;
    }
    if (fd_ < 0) {
        const auto fits = memory_limit_ - memory_.size();
        memory_.append(data.substr(0, fits));
        data.remove_prefix(fits);
        fd_ = open_temp_file(error);
        if (fd_ < 0)
            return false;
    }
    while (!data.empty()) {
        const auto n = ::pwrite(fd_, data.data(), data.size(), static_cast<off_t>(spilled_));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            error = std::string("cannot write the temporary body file: ") + std::strerror(errno);
            return false;
        }
        spilled_ += static_cast<std::uint64_t>(n);
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

long body_buffer::read_spilled(std::uint64_t offset, char* out, std::size_t n) const {
    if (fd_ < 0 || offset >= spilled_)
        return 0;
    for (;;) {
        const auto got = ::pread(fd_, out, n, static_cast<off_t>(offset));
        if (got < 0 && errno == EINTR)
            continue;
        return static_cast<long>(got);
    }
}

void body_buffer::clear() {
    if (fd_ >= 0)
        ::close(fd_);
    fd_ = -1;
    spilled_ = 0;
    std::string().swap(memory_);
}

} // namespace sluice::proxy
