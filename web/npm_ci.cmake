#  cmake -DWEB_DIR=... -DSTAMP=... -P npm_ci.cmake
#  Runs `npm ci` in WEB_DIR unless node_modules already matches
#  package-lock.json (recorded as its SHA-256 after the last successful npm ci),
#  so a rebuild or a second build directory does not reinstall.
file (SHA256 ${WEB_DIR}/package-lock.json lock_hash)
set (marker ${WEB_DIR}/node_modules/.phantomwatch-lock-sha256)
set (installed "")
if (EXISTS ${marker})
    file (READ ${marker} installed)
    string (STRIP "${installed}" installed)
endif ()
if (NOT installed STREQUAL lock_hash)
    find_program (NPM_EXECUTABLE npm REQUIRED)
    message (STATUS "web: npm ci")
    execute_process (COMMAND ${NPM_EXECUTABLE} ci --no-audit --no-fund --ignore-scripts
                     WORKING_DIRECTORY ${WEB_DIR} RESULT_VARIABLE rc)
    if (NOT rc EQUAL 0)
        message (FATAL_ERROR "web: npm ci failed (${rc})")
    endif ()
    file (WRITE ${marker} "${lock_hash}\n")
endif ()
file (TOUCH ${STAMP})
