# The Debian package: `cpack --config build/CPackConfig.cmake` (or
# `ninja -C build package`) writes gitopsd_<version>_amd64.deb into build/.
# packaging/test-deb.sh installs, upgrades, removes and purges it.
#
# Two install components:
#  - the default one (binaries, schemas, man pages, sysusers and tmpfiles
#    snippets) lands under the install prefix, so `cmake --install build
#    --prefix /usr/local` stays inside /usr/local;
#  - "system" holds what only the package puts outside the prefix, at
#    absolute paths: the unit in /lib/systemd/system and the conffile
#    /etc/gitopsd/gitopsd.json. It is left out of a plain `cmake --install`
#    so that never overwrites a configuration; ask for it with
#    `--component system`.
#
# The version is the project's unless -DGITOPSD_PACKAGE_VERSION=X says
# otherwise; `cpack -D CPACK_PACKAGE_VERSION=X` overrides it per run (the
# test builds an older package that way, from the same binaries).

set(GITOPSD_PACKAGE_VERSION "${PROJECT_VERSION}" CACHE STRING
    "Version of the Debian package (default: the project version)")
set(GITOPSD_PACKAGE_MAINTAINER "gitopsd maintainers <gitopsd@localhost>" CACHE STRING
    "Maintainer field of the Debian package")

# ---- what the package holds ------------------------------------------------

set(GITOPSD_PKG_DIR ${PROJECT_SOURCE_DIR}/packaging)
set(GITOPSD_UNIT_DIR ${PROJECT_SOURCE_DIR}/systemd)

install(FILES ${GITOPSD_UNIT_DIR}/gitopsd.sysusers.conf
        DESTINATION lib/sysusers.d RENAME gitopsd.conf)
install(FILES ${GITOPSD_UNIT_DIR}/gitopsd.tmpfiles.conf
        DESTINATION lib/tmpfiles.d RENAME gitopsd.conf)
file(GLOB GITOPSD_SCHEMA_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/schemas/*.schema.json)
install(FILES ${GITOPSD_SCHEMA_SOURCES} DESTINATION share/gitopsd/schemas)

install(FILES ${GITOPSD_UNIT_DIR}/gitopsd.service
        DESTINATION /lib/systemd/system COMPONENT system EXCLUDE_FROM_ALL)
install(FILES ${GITOPSD_PKG_DIR}/gitopsd.json
        DESTINATION /etc/gitopsd COMPONENT system EXCLUDE_FROM_ALL)

# Man pages: written in roff under packaging/man/, compressed as part of the
# normal build (gzip -n: no name or time stamp, so the .deb is reproducible).
set(GITOPSD_MAN_PAGES gitopsd.1 gitopsctl.1 gitopsd.json.5)
set(GITOPSD_MAN_OUTPUTS "")
foreach(page ${GITOPSD_MAN_PAGES})
  set(src ${GITOPSD_PKG_DIR}/man/${page})
  set(out ${CMAKE_BINARY_DIR}/man/${page}.gz)
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man
    COMMAND sh -c "gzip -9 -n -c \"$1\" > \"$2\"" gzip ${src} ${out}
    DEPENDS ${src}
    VERBATIM)
  list(APPEND GITOPSD_MAN_OUTPUTS ${out})
  string(REGEX MATCH "[0-9]$" section ${page})
  install(FILES ${out} DESTINATION share/man/man${section})
endforeach()
add_custom_target(gitopsd_man ALL DEPENDS ${GITOPSD_MAN_OUTPUTS})

# ---- the package -----------------------------------------------------------

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME gitopsd)
set(CPACK_PACKAGE_VERSION "${GITOPSD_PACKAGE_VERSION}")
set(CPACK_PACKAGE_CONTACT "${GITOPSD_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "GitOps release daemon")
set(CPACK_PACKAGE_DESCRIPTION
    "gitopsd keeps an embedded control plane equal to the JSON templates, release\n\
flows and preview templates committed in Git repositories, writes API edits\n\
back to Git, runs release flows (builds, jobs, supervised services, databases\n\
with backups) and preview environments. gitopsctl is its command-line client.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
# The default component and "system", into one package.
set(CPACK_INSTALL_CMAKE_PROJECTS
    "${CMAKE_BINARY_DIR};${PROJECT_NAME};Unspecified;/"
    "${CMAKE_BINARY_DIR};${PROJECT_NAME};system;/")

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # gitopsd_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Shared libraries: computed by dpkg-shlibdeps. adduser: postinst creates the
# user with it where systemd-sysusers is missing. procps: the unit's
# ExecReload runs /bin/kill. The daemon talks to Git
# through libgit2 and needs no git program; builds and jobs often do, and
# postgresql addons run psql, pg_dump and pg_restore.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, procps")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "git, ca-certificates")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "postgresql-client")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${GITOPSD_PKG_DIR}/debian/conffiles
    ${GITOPSD_PKG_DIR}/debian/postinst
    ${GITOPSD_PKG_DIR}/debian/prerm
    ${GITOPSD_PKG_DIR}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

include(CPack)
