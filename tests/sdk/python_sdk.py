#!/usr/bin/env python3
"""Meta's Python business SDK (facebook_business) against `capig sim`.

Usage: python_sdk.py SIM_URL [PIXEL_ID]

Points the SDK at the simulator through FacebookSession.GRAPH (the class attribute
the SDK's api.py reads when it builds a URL), sends one realistic event and checks
that it is accepted, then sends one event older than 7 days and checks that the
request is rejected with code 100. Exits non-zero on any mismatch.
"""

import sys
import time

from facebook_business.adobjects.serverside.action_source import ActionSource
from facebook_business.adobjects.serverside.custom_data import CustomData
from facebook_business.adobjects.serverside.event import Event
from facebook_business.adobjects.serverside.event_request import EventRequest
from facebook_business.adobjects.serverside.user_data import UserData
from facebook_business.api import FacebookAdsApi
from facebook_business.exceptions import FacebookRequestError
from facebook_business.session import FacebookSession


def purchase(event_time):
    # The SDK normalizes and hashes emails and phones itself; IP, UA, fbp and fbc go raw.
    user_data = UserData(
        emails=["Joe.Smith@Example.com"],
        phones=["+1 (650) 555-1212"],
        client_ip_address="203.0.113.7",
        client_user_agent="Mozilla/5.0 (X11; Linux x86_64) capig-sdk-test",
        fbc="fb.1.1554763741205.IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk",
        fbp="fb.1.1596403881668.1116446470",
    )
    custom_data = CustomData(currency="usd", value=142.52)
    return Event(
        event_name="Purchase",
        event_time=event_time,
        event_id="python-sdk-%d" % event_time,
        user_data=user_data,
        custom_data=custom_data,
        event_source_url="https://shop.example/checkout",
        action_source=ActionSource.WEBSITE,
    )


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    url = sys.argv[1].rstrip("/")
    pixel_id = sys.argv[2] if len(sys.argv) > 2 else "1234567890"

    FacebookSession.GRAPH = url
    FacebookAdsApi.init(access_token="capig-sim-python-token")
    now = int(time.time())

    response = EventRequest(events=[purchase(now)], pixel_id=pixel_id).execute()
    print("python sdk response:", response)
    if response.events_received != 1:
        print("expected events_received == 1", file=sys.stderr)
        return 1

    try:
        EventRequest(events=[purchase(now - 8 * 24 * 3600)], pixel_id=pixel_id).execute()
    except FacebookRequestError as error:
        print("python sdk rejection:", error.api_error_code(), error.api_error_subcode(), error.api_error_message())
        if error.api_error_code() != 100 or error.api_error_subcode() != 2804003:
            print("expected code 100, subcode 2804003", file=sys.stderr)
            return 1
    else:
        print("an event 8 days old was accepted", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
