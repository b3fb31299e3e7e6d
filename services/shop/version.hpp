// The version of the shop's messages a build speaks. The shop is at version 1; its
// next version (2) adds one optional field to a message of each service and raises
// that message's schemaversion. tests/upgrade builds every service at version 2 to
// upgrade a running shop one service at a time under load (docs/operations.md,
// "Upgrading one service at a time"): version 1 reads version 2 and back.
// TROUPE_SHOP_RETYPED makes a mistaken build of version 2 — the new field read with
// the wrong type — that troupe compat must catch before it is deployed.
#pragma once

#ifndef TROUPE_SHOP_VERSION
#define TROUPE_SHOP_VERSION 1
#endif
