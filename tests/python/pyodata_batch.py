#!/usr/bin/env python3
"""Interop check: SAP's OData 2 client (`pyodata`) sends a batch with a change set.

Usage: pyodata_batch.py ADDR   (the OData 2 service of tests/odata_clients.rs)

Scenarios:
  committed  one GET and a change set of two creates; pyodata itself requires the batch to be
             answered 202 and the change set as a nested multipart, and parses every answer.
  failed     a change set whose second create fails (the pony exists); pyodata reads the single
             answer that stands for the change set and raises; the first create is not kept.

Prints one JSON report on its last line.
"""

import json
import sys

import pyodata
import requests
from pyodata.exceptions import HttpError

METADATA = b"""<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="1.0" xmlns:edmx="http://schemas.microsoft.com/ado/2007/06/edmx"
    xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata">
  <edmx:DataServices m:DataServiceVersion="2.0">
    <Schema Namespace="Farm" xmlns="http://schemas.microsoft.com/ado/2008/09/edm">
      <EntityType Name="Animal">
        <Key><PropertyRef Name="Name"/></Key>
        <Property Name="Name" Type="Edm.String" Nullable="false"/>
        <Property Name="Age" Type="Edm.Int32"/>
      </EntityType>
      <EntityContainer Name="FarmContainer" m:IsDefaultEntityContainer="true">
        <EntitySet Name="Animals" EntityType="Farm.Animal"/>
      </EntityContainer>
    </Schema>
  </edmx:DataServices>
</edmx:Edmx>
"""


def main():
    addr = sys.argv[1]
    url = f"http://{addr}/odata/v2/farm/v1/"
    client = pyodata.Client(url, requests.Session(), metadata=METADATA)
    animals = client.entity_sets.Animals
    report = {}

    batch = client.create_batch()
    batch.add_request(animals.get_entity("pony"))
    changeset = client.create_changeset()
    changeset.add_request(animals.create_entity().set(Name="goat", Age=1))
    changeset.add_request(animals.create_entity().set(Name="duck", Age=2))
    batch.add_request(changeset)
    pony, created = batch.execute()
    report["pony"] = {"name": pony.Name, "age": pony.Age}
    report["created"] = [a.Name for a in created]

    batch = client.create_batch()
    changeset = client.create_changeset()
    changeset.add_request(animals.create_entity().set(Name="hen", Age=3))
    changeset.add_request(animals.create_entity().set(Name="pony", Age=9))
    batch.add_request(changeset)
    try:
        batch.execute()
        report["failed"] = None
    except HttpError as e:
        report["failed"] = e.response.status_code
    try:
        animals.get_entity("hen").execute()
        report["hen"] = "kept"
    except HttpError as e:
        report["hen"] = e.response.status_code
    report["goat"] = animals.get_entity("goat").execute().Age
    report["ok"] = True
    print(json.dumps(report))


if __name__ == "__main__":
    main()
